"""The dashboard and the HTTP API: what people see and do in a browser, and what scripts read,
over each domain's own queries and operations. Served by ``edge-server run`` (``[web]``) or by
``edge-server web`` alone; any number of processes, since everything lives in the database."""
