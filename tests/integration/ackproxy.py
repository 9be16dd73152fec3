"""ackproxy: a TCP proxy between the gateway and the test's mosquitto that can make the broker
look as if it answers pings but never confirms a publish.

    proxy = AckProxy(broker.host, broker.port)   # listening on 127.0.0.1:proxy.port
    proxy.withhold()    # from now on PUBACK, PUBREC and PUBCOMP to the client are dropped
    proxy.heal()        # they pass again
    proxy.close()

Client -> broker bytes pass unchanged. Broker -> client bytes are cut into MQTT packets
(fixed header: type in the high nibble of the first byte, then the remaining length as a
variable byte integer); while withholding, the confirmations of the client's publishes are
dropped (counted in `withheld`), everything else (CONNACK, SUBACK, PINGRESP, PUBLISH) passes.
So the client's keepalive stays satisfied while none of its QoS 1/2 publishes completes: what
a broker stuck in its persistence, or a stuck client library, looks like from the gateway.
In-process (threads), loopback only; every socket is closed by close().
"""

import socket
import threading

PUBACK, PUBREC, PUBCOMP = 4, 5, 7
MAX_PACKET = 1 << 28  # MQTT's own limit on the remaining length


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


def read_packet(sock):
    """One MQTT packet (fixed header included) from sock; ConnectionError at its end."""
    head = _recv_exact(sock, 1)
    length, mult, raw = 0, 1, bytearray()
    for _ in range(4):
        b = _recv_exact(sock, 1)[0]
        raw.append(b)
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    else:
        raise ConnectionError("malformed remaining length")
    if length > MAX_PACKET:
        raise ConnectionError("packet too long")
    return head + bytes(raw) + _recv_exact(sock, length)


class AckProxy:
    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self._withhold = threading.Event()
        self._lock = threading.Lock()
        self.withheld = 0  # confirmations dropped
        self.connections = 0  # client connections accepted
        self._socks = []
        self._threads = []
        self._closed = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.host, self.port = self._listener.getsockname()
        self._start(self._accept_loop)

    def withhold(self):
        self._withhold.set()

    def heal(self):
        self._withhold.clear()

    def _start(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _accept_loop(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self.connections += 1
                self._socks += [client, upstream]
            self._start(self._to_broker, client, upstream)
            self._start(self._to_client, upstream, client)

    @staticmethod
    def _shut(*socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _to_broker(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        self._shut(src, dst)

    def _to_client(self, src, dst):
        try:
            while True:
                pkt = read_packet(src)
                if self._withhold.is_set() and pkt[0] >> 4 in (PUBACK, PUBREC, PUBCOMP):
                    with self._lock:
                        self.withheld += 1
                    continue
                dst.sendall(pkt)
        except (OSError, ConnectionError):
            pass
        self._shut(src, dst)

    def close(self):
        with self._lock:
            self._closed = True
            socks, threads = list(self._socks), list(self._threads)
        self._shut(self._listener)
        self._listener.close()
        self._shut(*socks)
        for t in threads:
            t.join(5)
        for s in socks:
            s.close()
