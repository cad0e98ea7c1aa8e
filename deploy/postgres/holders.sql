-- Card holders' names and phones (card_holders) for the administrators' role only.
--
-- The service's role (edge-server) owns the database and everything in it; after this it can
-- neither read nor write card_holders, so nothing ingest, the dashboard or a stolen service
-- password reaches can name who holds a card. The administrators' role becomes a member of the
-- service's role (it can do all the service does) and owns card_holders. Run once as postgres,
-- after the first `edge-server db upgrade` or `db copy`, and again after an upgrade that says so:
--
--   runuser -u postgres -- psql -v server=edge-server -v admins=edge-admin \
--       -f /path/to/checkout/deploy/postgres/holders.sql edge
--
-- Backups (pg_dump) then run as postgres, which reads every table.
\set ON_ERROR_STOP on
BEGIN;
GRANT :"server" TO :"admins";
ALTER TABLE card_holders OWNER TO :"admins";
REVOKE ALL ON card_holders FROM PUBLIC;
REVOKE ALL ON card_holders FROM :"server";
COMMIT;
