"""paho-mqtt's client with batched socket I/O: same protocol, same callbacks, fewer syscalls.

paho 2.x reads one packet per ``select()`` and reads it in three or four ``recv()`` calls (fixed
header byte, remaining length, body), and it writes every acknowledgement with its own
``send()`` plus a wake-up byte on its internal socket pair. On a virtual machine each syscall
costs microseconds, so a consumer draining a backlog spends most of its time in the kernel:
measured here, a plain paho subscriber takes ~100 us of CPU per QoS 1 message, this client
~23 us (MQTT 3.1.1; ``bench/ingest.py`` prints both: 9.4k vs 41k msg/s in one run).

What changes, and why it is safe:

- Reads: one ``recv()`` of up to 256 KiB fills a buffer that serves paho's small reads;
  ``loop_read`` keeps parsing while the buffer holds bytes, so a packet already read is never
  left waiting for the next ``select()``. The buffer is dropped on reconnect (bytes of an old
  connection must never reach a new one).
- Acks (PUBACK) queued from other threads wake the network thread once per batch instead of
  once per ack, and consecutive PUBACKs are written with one ``send()``. Every ack is still
  sent, in order; a partial send is finished by paho's own write loop.
- Messages go straight to ``on_message`` when no per-topic callback is registered, instead of
  through paho's topic-filter trie for every message.
- With ``on_publish_raw`` set (and no per-topic callback), the complete QoS 0 and 1 PUBLISH
  packets in the buffer are parsed here, in one loop, and handed over as ``(topic, payload,
  mid, qos)``: no ``MQTTMessage``, packet dict or debug-log call per message, which is most of
  paho's ~10 us a message (py-spy, issue 12). Anything else (another packet type, QoS 2, a
  packet only partly read, MQTT 5 properties, a topic that is not UTF-8, a malformed header)
  goes to paho's own reader untouched, which parses, answers or rejects it as before. Like
  paho, a packet is consumed before its callback runs, under ``_in_callback_mutex``, and the
  keepalive's ``_last_bytes_received`` moves on with the bytes read.
- ``ack`` of a QoS 1 message queues the same 4-byte PUBACK paho builds, without paho's debug
  log call and format parsing per ack; ``ack_many`` queues a whole group's PUBACKs as one
  packet entry (the ingest pipeline acknowledges every message, a group at a time).

It overrides paho's ``ack`` and private ``_sock_recv``, ``_packet_queue``, ``_packet_write``
and ``_handle_on_message`` (and uses ``_manual_ack``, ``_in_packet``, ``_protocol``,
``_in_callback_mutex``, ``_msgtime_mutex``, ``_last_bytes_received`` and ``_loop_rc_handle``),
pinned by the lock file;
tests/unit/ingest/test_mqtt_client.py fails if their shape changes.
"""

from __future__ import annotations

import contextlib
import ssl
import struct
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from coldchain.exceptions import ConfigError
from coldchain.settings import MqttSettings

__all__ = ["BatchedClient", "use_tls"]

_PUBACK = 0x40
_PUBLISH = 0x30
_PUBACK_PACKET = struct.Struct("!BBH")  # fixed header, remaining length 2, packet id
_PUBACK_WORD = (_PUBACK << 24) | (2 << 16)  # the same 4 bytes as one big-endian word, id 0
_READ_BYTES = 256 * 1024
_MAX_COALESCED = 8192  # PUBACKs are 4 bytes (MQTT 3.1.1) or a few more (MQTT 5)


def use_tls(client: mqtt.Client, settings: MqttSettings) -> None:
    """Connect ``client`` over TLS when ``settings.tls_ca_path`` is set (TLS 1.2 or newer, the
    broker's certificate checked against that CA and its host name; the client certificate and
    key when given). Raises ``ConfigError`` naming the option whose file ssl cannot load."""
    if settings.tls_ca_path is None:
        return
    ca, cert, key = settings.tls_ca_path, settings.tls_cert_path, settings.tls_key_path
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=str(ca))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError("COLDCHAIN_MQTT__TLS_CA_PATH", str(ca), f"not a CA (PEM): {exc}") from exc
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(certfile=str(cert), keyfile=str(key))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                "COLDCHAIN_MQTT__TLS_CERT_PATH", str(cert), f"certificate and key: {exc}"
            ) from exc
    client.tls_set_context(context)


class BatchedClient(mqtt.Client):
    """A drop-in ``paho.mqtt.client.Client`` for high-rate consumers (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._wake_pending = False
        # (topic, payload, mid, qos) for each QoS 0/1 PUBLISH parsed by the fast path; when
        # None, every message goes through paho's reader and ``on_message``.
        self.on_publish_raw: Callable[[str, bytes, int, int], None] | None = None

    def reconnect(self) -> MQTTErrorCode:
        self._rbuf, self._rpos = b"", 0
        return super().reconnect()

    # -- reads -----------------------------------------------------------------------------
    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos < len(buf):
            end = pos + bufsize
            self._rpos = end
            return buf[pos:end]
        data = super()._sock_recv(_READ_BYTES)
        if len(data) <= bufsize:  # includes b"": paho reads it as the connection closing
            return data
        self._rbuf, self._rpos = data, bufsize
        return data[:bufsize]

    def buffered_bytes(self) -> int:
        """Bytes read from the socket that paho has not parsed yet."""
        return max(len(self._rbuf) - self._rpos, 0)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self._fast_path_on():
            rc = self._fill()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
            self._read_publishes()
            if self._rpos >= len(self._rbuf):
                return rc
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._sock is not None
            and (self._rpos < len(self._rbuf))
        ):
            if self._fast_path_on():
                self._read_publishes()
                if self._rpos >= len(self._rbuf):
                    break
            rc = super().loop_read(max_packets)
        return rc

    def _fast_path_on(self) -> bool:
        return (
            self.on_publish_raw is not None
            and self._in_packet["command"] == 0  # paho is not half-way through a packet
            and not self._on_message_filtered._root._children
        )

    def _fill(self) -> MQTTErrorCode:
        """One ``recv()`` into an exhausted buffer; a closed or failed socket is handled as
        paho's reader handles it (connection lost)."""
        if self._rpos < len(self._rbuf):
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        try:
            data = super()._sock_recv(_READ_BYTES)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if not data:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        self._rbuf, self._rpos = data, 0
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _read_publishes(self) -> None:
        """Hand every complete QoS 0/1 PUBLISH at the head of the buffer to ``on_publish_raw``;
        stop at the first packet paho must read (see the module doc)."""
        handler = self.on_publish_raw
        assert handler is not None
        buf, pos, end = self._rbuf, self._rpos, len(self._rbuf)
        v5 = self._protocol == mqtt.MQTTv5
        taken = 0
        while pos < end:
            command = buf[pos]
            qos = (command & 0x06) >> 1
            if (command & 0xF0) != _PUBLISH or qos > 1:
                break
            i, length, shift = pos + 1, 0, 0
            while i < end and shift <= 21:  # remaining length: at most four bytes
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                break  # partly read, or malformed: paho's reader decides
            body_end = i + length
            if body_end > end or length < 2:
                break
            topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
            start = topic_end + 2 if qos else topic_end  # the packet id after the topic
            if topic_end == i + 2 or start > body_end:
                break  # an empty or overlong topic: paho's reader rejects it
            mid = (buf[topic_end] << 8) | buf[topic_end + 1] if qos else 0
            if v5:
                if start >= body_end or buf[start]:
                    break  # properties (or their length missing): paho reads them
                start += 1
            try:
                topic = buf[i + 2 : topic_end].decode()
            except UnicodeDecodeError:
                break
            self._rpos = pos = body_end  # consumed before the callback, as paho does
            taken += 1
            with self._in_callback_mutex:
                try:
                    handler(topic, buf[start:body_end], mid, qos)
                except Exception as err:
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
        if taken:
            with self._msgtime_mutex:
                self._last_bytes_received = mqtt.time_func()

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        # paho walks its topic-filter trie (message_callback_add) for every message, a
        # recursive generator even when no filter is registered: skip it when there is none.
        if self._on_message_filtered._root._children:
            super()._handle_on_message(message)
            return
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    # -- writes ----------------------------------------------------------------------------
    def ack_many(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages ``mids`` (in order) with one queued packet holding their
        PUBACKs back to back: one queue entry and one wake-up for a whole group instead of one
        per message. MQTT allows any number of control packets in one TCP write."""
        if not mids:
            return
        if not self._manual_ack or self._thread is None or self._sockpairW is None:
            for mid in mids:
                self.ack(mid, 1)
            return
        packet = struct.pack(f"!{len(mids)}I", *(_PUBACK_WORD | mid for mid in mids))
        self._out_packet.append(
            {
                "command": _PUBACK,
                "mid": 0,
                "qos": 1,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": None,
            }
        )
        self._wake()

    def ack(self, mid: int, qos: int) -> MQTTErrorCode:
        if qos == 1 and self._manual_ack:
            return self._packet_queue(_PUBACK, _PUBACK_PACKET.pack(_PUBACK, 2, mid), mid, 1)
        return super().ack(mid, qos)

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        if (command & 0xF0) != _PUBACK or self._thread is None or self._sockpairW is None:
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append(
            {
                "command": command,
                "mid": mid,
                "qos": qos,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": info,
            }
        )
        self._wake()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _wake(self) -> None:
        # One wake-up per batch: the flag is cleared when the network thread starts writing,
        # and anything queued after that point wakes it again.
        if not self._wake_pending and self._sockpairW is not None:
            self._wake_pending = True
            with contextlib.suppress(BlockingIOError):  # the pair is full of wake-ups already
                self._sockpairW.send(b"0")

    def loop_write(self) -> MQTTErrorCode:
        self._wake_pending = False
        return super().loop_write()

    def _packet_write(self) -> MQTTErrorCode:
        q = self._out_packet
        if len(q) > 1 and (q[0]["command"] & 0xF0) == _PUBACK and q[0]["pos"] == 0:
            parts: list[bytes | bytearray] = []
            while (
                q
                and (q[0]["command"] & 0xF0) == _PUBACK
                and q[0]["pos"] == 0
                and len(parts) < _MAX_COALESCED
            ):
                parts.append(q.popleft()["packet"])
            merged = b"".join(parts)
            q.appendleft(
                {
                    "command": _PUBACK,
                    "mid": 0,
                    "qos": 1,
                    "pos": 0,
                    "to_process": len(merged),
                    "packet": merged,
                    "info": None,
                }
            )
        return super()._packet_write()
