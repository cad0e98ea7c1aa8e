"""The ingest process: broker -> validate -> store -> acknowledge.

paho's network thread only queues incoming messages. One writer thread takes whatever has
queued up (up to ``GROUP_MAX`` messages) and stores it in one transaction: under load many
batches share one disk flush (group commit), when idle each message is stored at once. Only
after the commit does it send the broker's PUBACK (paho's manual acknowledgement) and publish
each agent's ``Ack``, so nothing is acknowledged that is not on disk.

Several such processes share the load through an MQTT shared subscription. Each keeps a
persistent MQTT v5 session, so events published while it is down wait at the broker, and
publishes its ``ServerStatus`` (retained, with a last will), so agents resend at once when it is
back. The main thread publishes queued commands and pings systemd's watchdog while the writer is
alive.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.tls import describe_connect_error, tls_context
from edge_agent.watchdog import sd_notify
from edge_agent.wire import (
    MAX_BATCH_EVENTS,
    Ack,
    Channel,
    Nack,
    Refusal,
    ServerStatus,
    TopicError,
    encode,
    parse_topic,
    server_topic,
    topic,
    topic_filter,
)
from server import __version__, commands
from server.alerts import retention as alert_retention
from server.alerts.notify import Notifier, contacts_warnings, known_sites
from server.alerts.projection import AlertsProjection
from server.cards.sync import CardSync
from server.climate.partitions import ensure_partitions
from server.config import ServerConfig
from server.inbox import FairInbox
from server.ingest import journal
from server.ingest.core import Ingestor, IngestResult, Settings
from server.integrity.backup import start_schedule
from server.projections import default_projections

log = logging.getLogger(__name__)

#: At most this many messages share one transaction.
GROUP_MAX = 64
#: How often the writer adopts quiet epochs and lets lagging projections catch up.
CHORES_EVERY_S = 2.0
#: How many unacknowledged messages the broker may hand this process (MQTT v5 Receive
#: Maximum): enough that a flood from one agent is taken off the broker and dropped here
#: (``FairInbox``) instead of queueing every other agent's messages behind it at the broker.
RECEIVE_MAXIMUM = 2000
#: How often the monthly partitions of ``climate_records`` are made twelve months ahead
#: (PostgreSQL; nothing to do on SQLite); an hour after a failure.
PARTITIONS_EVERY_S = 86400.0
PARTITIONS_RETRY_S = 3600.0
#: How often old rows are pruned, and how soon after a failed prune it is tried again.
PRUNE_EVERY_S = 6 * 3600.0
PRUNE_RETRY_S = 600.0


class BrokerClient(mqtt.Client):
    """paho's client, saying once why connecting fails (paho's loop retries silently), and for
    MQTT over TLS trusting only ``ca_file`` (read at each attempt until it can be)."""

    ca_file: Path | None = None
    _tls_ready = False
    _failure = ""

    def reconnect(self) -> MQTTErrorCode:
        try:
            if self.ca_file is not None and not self._tls_ready:
                try:
                    context = tls_context(self.ca_file)
                except OSError as exc:
                    why = describe_connect_error(exc)
                    raise OSError(f"TLS: cannot use mqtt.ca_file {self.ca_file}: {why}") from None
                self.tls_set_context(context)
                self._tls_ready = True
            rc = super().reconnect()
        except OSError as exc:
            failure = describe_connect_error(exc, tls=self.ca_file is not None)
            if failure != self._failure:
                log.error("cannot connect to broker %s:%d: %s", self.host, self.port, failure)
                self._failure = failure
            raise
        self._failure = ""
        return rc


def settings(config: ServerConfig) -> Settings:
    return Settings(
        gap_report_after=timedelta(seconds=config.ingest.gap_report_after_s),
        max_ahead=config.ingest.max_seq_ahead,
        epoch_proof=timedelta(seconds=config.ingest.epoch_proof_s),
        refusals_per_min=config.ingest.refusals_per_min,
    )


class IngestService:
    def __init__(self, config: ServerConfig, engine: sa.Engine) -> None:
        self.config = config
        projections = default_projections(config)
        self._alerts = next(p for p in projections if isinstance(p, AlertsProjection))
        self.notifier = Notifier(engine, config.alerts, config.server.zone, config.server.language)
        self.ingestor = Ingestor(
            engine,
            config.mqtt.topic_prefix,
            settings=settings(config),
            projections=projections,
            committed=self._committed,
        )
        m = config.mqtt
        self.started_at = datetime.now(UTC)
        self.client = BrokerClient(
            CallbackAPIVersion.VERSION2,
            client_id=m.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self.client.ca_file = m.ca_file if m.tls else None
        if m.username:
            self.client.username_pw_set(m.username, m.password)
        self._status_topic = server_topic(m.topic_prefix, m.client_id)
        self.client.will_set(self._status_topic, self._server_status(False), qos=1, retain=True)
        # Few server processes: no herd to spread, and the backlogs move soon after an outage.
        self.client.reconnect_delay_set(min_delay=1, max_delay=4)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self._inbox: FairInbox[mqtt.MQTTMessage] = FairInbox(config.ingest.queue_share)
        self._stopping = threading.Event()
        self._writer_beat = time.monotonic()
        self.card_sync = CardSync(
            engine, m.topic_prefix, timedelta(seconds=config.ingest.offline_after_s)
        )

    def _committed(self) -> None:
        if self._alerts.moved:
            self._alerts.moved = False
            self.notifier.wake.set()

    def warn_contacts(self) -> None:
        """The monitoring rules ask for at least three people per site: say at start where the
        configuration reaches fewer."""
        try:
            with self.ingestor.engine.connect() as conn:
                sites, parents = known_sites(conn, self.config.alerts.home_site)
        except sa.exc.SQLAlchemyError as exc:
            log.error("cannot read the sites to check their alert contacts: %s", exc)
            return
        for warning in contacts_warnings(self.config.alerts, sites, parents):
            log.warning("alerts: %s", warning)

    def _subscriptions(self) -> list[tuple[str, int]]:
        """Events are shared between ingest processes; status is not: a broker gives retained
        messages (a last will published while ingest was down) only to plain subscriptions."""
        group = f"$share/{self.config.mqtt.shared_group}/"
        prefix = self.config.mqtt.topic_prefix
        return [
            (group + topic_filter(prefix, Channel.EVENTS), 1),
            (topic_filter(prefix, Channel.STATUS), 1),
        ]

    def _server_status(self, online: bool) -> bytes:
        return encode(
            ServerStatus(
                server_id=self.config.mqtt.client_id,
                online=online,
                started_at=self.started_at,
                version=__version__,
            )
        )

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused connection: %s", reason)
            return
        log.info(
            "connected to broker %s:%d (%s session)",
            self.config.mqtt.host,
            self.config.mqtt.port,
            "resumed" if flags.session_present else "new",
        )
        client.subscribe(self._subscriptions())
        client.publish(self._status_topic, self._server_status(True), qos=1, retain=True)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("disconnected from broker: %s; reconnecting", reason)

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            _site, agent, _channel = parse_topic(self.config.mqtt.topic_prefix, message.topic)
        except TopicError:
            agent = ""  # refused by the writer, queued like any other sender's
        if not self._inbox.put(agent, message):
            client.ack(message.mid, message.qos)  # dropped: the flood's own sender pays

    # --- the writer ---------------------------------------------------------------------------

    def _write_loop(self) -> None:
        next_chores = 0.0
        while not self._stopping.is_set():
            self._writer_beat = time.monotonic()
            if self._writer_beat >= next_chores:
                self.chores()
                next_chores = time.monotonic() + CHORES_EVERY_S
            group = self._inbox.take(GROUP_MAX, timeout=0.5)
            if group:
                self.store(group)

    def store(self, group: list[mqtt.MQTTMessage]) -> None:
        """Store a group of messages, then acknowledge them to the broker and the agents.

        The broker's PUBACK goes out after the commit, and also after a failure: what counts
        for the agent is the ``Ack``, which a failed message does not get, so the agent sends
        it again; holding PUBACKs back would only stall the broker's in-flight window.
        """
        now = datetime.now(UTC)
        try:
            results = self._store_group(group, now)
        finally:
            for message in group:
                self.client.ack(message.mid, message.qos)
        latest: dict[str, IngestResult] = {}
        for result in results:
            if result.agent_id is not None and result.acked_seq is not None:
                latest[result.agent_id] = result
            if result.stored or result.refused or result.not_understood or result.conflicts:
                log.info(
                    "agent %s: %d stored, %d duplicate, %d not understood, %d conflicting, "
                    "%d refused; acked %s",
                    result.agent_id,
                    result.stored,
                    result.duplicates,
                    result.not_understood,
                    result.conflicts,
                    len(result.refused),
                    result.acked_seq,
                )
            elif result.duplicates:
                log.info(
                    "agent %s: %d duplicate events ignored", result.agent_id, result.duplicates
                )
        self._publish_nacks(results, now)
        for result in latest.values():
            self._publish_ack(result, now)

    def chores(self) -> None:
        """Work no message triggers: adopting a quiet agent's new epoch, projection catch-up,
        counting what the inbox dropped."""
        try:
            dropped = self._inbox.dropped()
            if dropped:
                with self.ingestor.engine.begin() as conn:
                    journal.count_dropped(conn, dropped)
                for agent, n in dropped.items():
                    log.error("agent %s: %d messages dropped beyond its queue share", agent, n)
            self.ingestor.settle_epochs(datetime.now(UTC))
            self.ingestor.catch_up()
            self.ingestor.report_limits(datetime.now(UTC))
        except sa.exc.SQLAlchemyError as exc:
            log.error("housekeeping failed: %s", exc)

    def _store_group(self, group: list[mqtt.MQTTMessage], now: datetime) -> list[IngestResult]:
        items = [(m.topic, bytes(m.payload)) for m in group]
        try:
            return self.ingestor.handle_many(items, now)
        except sa.exc.SQLAlchemyError as exc:
            if len(group) == 1:
                log.error("cannot store message from %s: %s", group[0].topic, exc)
                return []
        log.warning("a group of %d messages failed; storing them one by one", len(group))
        results: list[IngestResult] = []
        for topic_, payload in items:
            try:
                results += self.ingestor.handle_many([(topic_, payload)], now)
            except sa.exc.SQLAlchemyError as exc:
                log.error("cannot store message from %s: %s", topic_, exc)
        return results

    def _publish_nacks(self, results: list[IngestResult], now: datetime) -> None:
        """One ``Nack`` per agent and group for what was refused and kept (a flood beyond the
        refusal limit gets no answer, as it gets no dead letter)."""
        nacks: dict[str, Nack] = {}
        prefix = self.config.mqtt.topic_prefix
        for r in results:
            whole = r.reason[:500] if r.dead_lettered and r.kept and r.reason else None
            if not (r.agent_id and r.topic and (whole or r.refused)):
                continue
            try:
                site, agent, channel = parse_topic(prefix, r.topic)
            except TopicError:
                continue
            if channel is not Channel.EVENTS:
                continue
            acks_topic = topic(prefix, site, agent, Channel.ACKS)
            before = nacks.get(acks_topic)
            refused: list[Refusal] = [*(before.refused if before else []), *r.refused]
            nacks[acks_topic] = Nack(
                agent_id=r.agent_id,
                epoch=r.epoch or (before.epoch if before else None),
                message=(before.message if before else None) or whole,
                refused=refused[:MAX_BATCH_EVENTS],
                server_time=now,
            )
        for acks_topic, nack in nacks.items():
            self.client.publish(acks_topic, encode(nack), qos=1, retain=False)

    def _publish_ack(self, result: IngestResult, now: datetime) -> None:
        if not (result.agent_id and result.site_id and result.epoch) or result.acked_seq is None:
            return
        ack = Ack(
            agent_id=result.agent_id,
            epoch=result.epoch,
            acked_seq=result.acked_seq,
            highest_seq=result.highest_seq,
            server_time=now,
        )
        prefix = self.config.mqtt.topic_prefix
        ack_topic = topic(prefix, result.site_id, result.agent_id, Channel.ACKS)
        self.client.publish(ack_topic, encode(ack), qos=1, retain=True)

    # --- commands and supervision ---------------------------------------------------------------

    def publish_due_commands(self) -> int:
        """Send commands still waiting for a result; return how many were sent."""
        now = datetime.now(UTC)
        c = self.config.commands
        due = commands.due(
            self.ingestor.engine,
            self.config.mqtt.topic_prefix,
            now,
            timedelta(seconds=self.config.ingest.offline_after_s),
        )
        sent = []
        for out in due:
            info = self.client.publish(out.topic, out.payload, qos=1)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                sent.append(out)
        commands.mark_published(self.ingestor.engine, sent, now, c.retry_s, c.retry_max_s)
        return len(sent)

    def sync_cards(self) -> int:
        """Queue the registry's changes and other boxes' takes for the boxes' agents (see
        ``server.cards.sync``); return how many commands were queued."""
        report = self.card_sync.run(datetime.now(UTC))
        return len(report.sent)

    def prune(self) -> float:
        """Delete what is kept only for a while (answered commands; see each ``prune``); return
        the seconds until the next time. Several server processes may all do it: each deletes
        what is still there."""
        now = datetime.now(UTC)
        engine = self.ingestor.engine
        try:
            pruned = commands.prune(engine, now, timedelta(days=self.config.commands.keep_days))
            told = alert_retention.prune(
                engine, now, timedelta(days=self.config.alerts.keep_notices_days)
            )
        except sa.exc.SQLAlchemyError as exc:
            log.error("cannot prune old rows, tried again later: %s", exc)
            return PRUNE_RETRY_S
        if pruned or told:
            log.info("pruned %d answered commands, %d old notices and silences", pruned, told)
        return PRUNE_EVERY_S

    def keep_partitions(self) -> float:
        """Create the months of ``climate_records`` due within a year (``ensure_partitions``:
        idempotent, and safe with several ingest processes); return the seconds until the
        next time."""
        try:
            ensure_partitions(self.ingestor.engine, datetime.now(UTC))
        except (sa.exc.SQLAlchemyError, ValueError) as exc:
            log.error("cannot create the partitions of climate_records: %s", exc)
            return PARTITIONS_RETRY_S
        return PARTITIONS_EVERY_S

    def run(self) -> None:
        def stop(_sig: int, _frame: FrameType | None) -> None:
            log.info("server stopping")
            self._stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        writer.start()
        self.warn_contacts()
        notifier = threading.Thread(
            target=self.notifier.run, args=(self._stopping,), name="alerts", daemon=True
        )
        notifier.start()
        backups = start_schedule(self.config)  # the daily backup, in its own thread
        stop_web = None
        if self.config.web.enabled:
            from server.web.app import serve_in_thread

            stop_web = serve_in_thread(self.config, self.ingestor.engine)
        m = self.config.mqtt
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        session.SessionExpiryInterval = m.session_expiry_s
        session.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client.connect_async(
            m.host, m.port, keepalive=60, clean_start=False, properties=session
        )
        self.client.loop_start()
        sd_notify("READY=1")
        next_sync = next_partitions = next_prune = time.monotonic()
        try:
            while not self._stopping.wait(self.config.commands.poll_s):
                if time.monotonic() >= next_partitions:
                    next_partitions = time.monotonic() + self.keep_partitions()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.prune()
                if self.client.is_connected():
                    if time.monotonic() >= next_sync:
                        next_sync = time.monotonic() + self.config.cards.sync_interval_s
                        try:
                            self.sync_cards()
                        except (sa.exc.SQLAlchemyError, ValueError, commands.CommandError):
                            log.exception("cannot sync the card registry to the boxes")
                    try:
                        self.publish_due_commands()
                    except sa.exc.SQLAlchemyError as exc:
                        log.error("cannot read queued commands: %s", exc)
                if writer.is_alive() and time.monotonic() - self._writer_beat < 60:
                    sd_notify("WATCHDOG=1")
                else:
                    log.error("ingest writer is not running; withholding watchdog pings")
        finally:
            if self.client.is_connected():
                info = self.client.publish(
                    self._status_topic, self._server_status(False), qos=1, retain=True
                )
                info.wait_for_publish(timeout=2)
            self.client.disconnect()
            self.client.loop_stop()
            writer.join(timeout=10)
            self.notifier.wake.set()
            notifier.join(timeout=10)
            if backups is not None:
                backups.stop()
            if stop_web is not None:
                stop_web()
