"""The emulated kube-apiserver's HTTPS server: TLS, authentication, authorization, routing, watch, access log.

Reads: the flags (``flags.ApiServerFlags``), the objects of ``store.Store`` (requests) and of
``mirror.Mirror`` (authentication and authorization, as the real server reads them through informers).
Writes: objects through the registry, one access-log line per request on stderr
(``HTTP verb=... URI=... user=... resp=...``; a watch logs when it ends). An etcd that does not answer is
a 500 InternalError, and fails the ``etcd`` check of /livez, /readyz and /healthz.
TLS uses --tls-cert-file/--tls-private-key-file; a client certificate is optional and, when sent, must
chain to --client-ca-file (a foreign one fails the handshake). Each connection is handled on its own
thread, TLS handshake included, so a slow client never blocks the accept loop.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubeboot.sandbox.apiserver import errors, etcd, registry, routes, watch
from kubeboot.sandbox.apiserver.authn import Authenticator, AuthError
from kubeboot.sandbox.apiserver.flags import ApiServerFlags, FlagError
from kubeboot.sandbox.apiserver.mirror import Mirror
from kubeboot.sandbox.apiserver.registry import Registry
from kubeboot.sandbox.apiserver.resources import BY_KEY
from kubeboot.sandbox.apiserver.store import Store
from kubeboot.sandbox.apiserver.types import Authorizer, ObjectReader, RequestAttributes, UserInfo
from kubeboot.tasks.redaction import redact

MASTERS = "system:masters"
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
TRUE = ("1", "t", "T", "true", "True", "TRUE")  # strconv.ParseBool
BODY_TYPES = ("application/json",)  # the media types of create/update/delete bodies decoded here


class _MastersOnly:
    """TEMPORARY, used only while ``sandbox.apiserver.rbac`` cannot be imported: system:masters may do
    everything, everyone may read the health and version paths, authenticated users discovery (what the
    default policy's system:public-info-viewer and system:discovery grant). Remove with the fallback."""

    def authorize(self, attrs: RequestAttributes) -> tuple[bool, str]:
        if MASTERS in attrs.user.groups:
            return True, ""
        if not attrs.resource_request and attrs.verb == "get":
            path = attrs.path.rstrip("/") or "/"
            if path.startswith(PUBLIC_PATHS):
                return True, ""
            if "system:authenticated" in attrs.user.groups and path.startswith(("/api", "/apis")):
                return True, ""
        return False, ""


def build_authorizer(modes: list[str], reader: ObjectReader) -> Authorizer:
    try:
        from kubeboot.sandbox.apiserver import rbac
    except ImportError:
        return _MastersOnly()
    return rbac.build_authorizer(modes, reader)


def ssl_context(flags: ApiServerFlags) -> ssl.SSLContext:
    if not flags.tls_cert_file:
        raise FlagError("--tls-cert-file and --tls-private-key-file are required (no self-signed fallback)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(flags.tls_cert_file, flags.tls_private_key_file)
    if flags.client_ca_file:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(flags.client_ca_file)
    return ctx


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, flags: ApiServerFlags, store: Store, mirror: Mirror) -> None:
        self.flags, self.store, self.mirror = flags, store, mirror
        self.authorizer = build_authorizer(flags.authorization_modes, mirror)
        self.authenticator = Authenticator(flags, mirror)
        self.registry = Registry(store, flags.service_network, self.authorizer)
        self.tls = ssl_context(flags)
        self.address = f"{flags.advertise_address}:{flags.secure_port}"
        self.address_family = socket.AF_INET6 if ":" in flags.advertise_address else socket.AF_INET
        super().__init__((flags.advertise_address, flags.secure_port), Handler)
        self._ensure_kubernetes_service()

    def _ensure_kubernetes_service(self) -> None:
        """The ``default/kubernetes`` Service the real server maintains, on the range's first address."""
        if self.store.get("/services", "default", "kubernetes") is not None:
            return
        first = str(self.flags.service_network.network_address + 1)
        svc = {"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"clusterIP": first, "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                                       "targetPort": self.flags.secure_port}]}}
        try:
            self.registry.create(BY_KEY["/services"], "default", svc, UserInfo("system:apiserver", (MASTERS,)))
        except errors.ApiError as e:
            if e.code != 409:  # another API server of the cluster made it first
                raise

    def failing_checks(self) -> dict[str, str]:
        """Health checks failing now: etcd (a read, as the real etcd check does), the informer cache."""
        failing: dict[str, str] = {}
        try:
            self.store.etcd.range(self.flags.etcd_prefix.rstrip("/") + "/health", count_only=True)
        except etcd.EtcdError as e:
            failing["etcd"] = failing["etcd-readiness"] = str(e)
        if not self.mirror.synced.is_set():
            failing["informer-sync"] = "informers not synced"
        return failing

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # As Go's net/http (so the real kube-apiserver) does: a response goes out as two writes, headers
        # then body, and with Nagle on the body waits for the client's delayed ACK, ~40 ms per request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        err = sys.exc_info()[1]
        if isinstance(err, ssl.SSLError):
            log(f"http: TLS handshake error from {client_address[0]}:{client_address[1]}: {err}")
        elif isinstance(err, OSError):
            log(f"http: connection from {client_address[0]}:{client_address[1]} failed: {err}")
        else:
            super().handle_error(request, client_address)


def log(line: str) -> None:
    print(redact(line), file=sys.stderr, flush=True)  # a request may carry a bootstrap token


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections are closed after this
    server: ApiServer
    user: UserInfo = UserInfo("")

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one access-log line per request, written by _send

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(body)
        log(f'HTTP verb="{self.command}" URI="{self.path}" user="{self.user.name}" resp={code} '
            f'srcIP="{self.client_address[0]}:{self.client_address[1]}"')

    def _json(self, code: int, doc: Any) -> None:
        self._send(code, json.dumps(doc, separators=(",", ":")).encode())

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self, method: str) -> None:
        raw = self._body()
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            self.user = self._authenticate()
            if routes.is_resource_path(url.path):
                self._resource(method, url.path, query, raw)
            else:
                self._non_resource(method, url.path, query)
        except errors.ApiError as e:
            self._json(e.code, e.status())
        except etcd.EtcdError as e:
            log(f"etcd request failed: {e}")
            self._json(500, errors.internal(str(e)).status())

    def _authenticate(self) -> UserInfo:
        try:
            cert = self.request.getpeercert(binary_form=True)
            return self.server.authenticator.authenticate(cert, self.headers.get("Authorization"))
        except AuthError as e:
            log(f'Unable to authenticate the request: {e} (URI="{self.path}")')
            raise errors.unauthorized() from None

    def _non_resource(self, method: str, path: str, query: dict[str, str]) -> None:
        attrs = RequestAttributes(self.user, method.lower(), path=path, resource_request=False)
        allowed, reason = self.server.authorizer.authorize(attrs)
        if not allowed:
            raise errors.forbidden_path(attrs.verb, self.user.name, path, reason)
        if method != "GET":
            raise errors.method_not_allowed()
        checked = routes.health(path, "verbose" in query, self.server.failing_checks())
        if checked is not None:
            self._send(checked[0], checked[1].encode(), "text/plain; charset=utf-8")
            return
        self._json(200, routes.non_resource(path, self.server.address))

    def _resource(self, method: str, path: str, query: dict[str, str], raw: bytes) -> None:
        route = routes.parse(path)
        rt, ns, name, sub = route.rt, route.namespace, route.name, route.sub
        verb = route.verb(method, query.get("watch", "") in TRUE)
        attrs = RequestAttributes(self.user, verb, ns, rt.group, rt.version, rt.plural, sub, name, path,
                                  field_selector=query.get("fieldSelector", ""))
        allowed, reason = self.server.authorizer.authorize(attrs)
        if not allowed:
            message = errors.forbidden_message(verb, self.user.name, rt.key, sub, name, ns, reason)
            raise errors.forbidden(rt.key, name, message)
        if verb not in rt.verbs and verb not in ("watch", "deletecollection"):
            raise errors.method_not_allowed(rt.key, name)
        self._dispatch(route, verb, query, raw)

    def _dispatch(self, route: routes.Route, verb: str, query: dict[str, str], raw: bytes) -> None:
        reg, rt, ns, name, sub = self.server.registry, route.rt, route.namespace, route.name, route.sub
        dry_run = query.get("dryRun") == "All"
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if verb == "get":
            self._json(200, reg.get(rt, ns, name, sub))
        elif verb == "list":
            self._json(200, reg.list(rt, ns or None, query.get("labelSelector", ""), query.get("fieldSelector", ""),
                                     limit=_int("limit", query.get("limit", "")),
                                     continue_token=query.get("continue", ""),
                                     resource_version=query.get("resourceVersion", ""),
                                     resource_version_match=query.get("resourceVersionMatch", "")))
        elif verb == "create":
            self._json(201, reg.create(rt, ns, _decode(rt.kind, raw, content_type), self.user, sub=sub,
                                       dry_run=dry_run))
        elif verb == "update":
            self._json(200, reg.update(rt, ns, name, _decode(rt.kind, raw, content_type), sub=sub, dry_run=dry_run))
        elif verb == "patch":
            self._json(200, reg.patch(rt, ns, name, content_type, raw, sub=sub, dry_run=dry_run))
        elif verb == "delete" and not sub:
            options = _decode("DeleteOptions", raw, content_type) if raw.strip() else {}
            dry_run = dry_run or "All" in (options.get("dryRun") or [])
            self._json(200, reg.delete(rt, ns, name, options, dry_run=dry_run))
        elif verb == "watch" and not sub:
            self._watch(route, query)
        else:
            raise errors.method_not_allowed(rt.key, name)

    # --- watch ------------------------------------------------------------------------------------------

    def _watch(self, route: routes.Route, query: dict[str, str]) -> None:
        rt = route.rt
        fields = query.get("fieldSelector", "")
        if route.name:  # the deprecated watch of one object: a watch of its name
            fields = ",".join(filter(None, [fields, f"metadata.name={route.name}"]))
        timeout = query.get("timeoutSeconds", "")
        opts = watch.WatchOptions(resource_version=query.get("resourceVersion", ""),
                                  allow_bookmarks=query.get("allowWatchBookmarks", "") in TRUE,
                                  match=registry.match(rt, query.get("labelSelector", ""), fields),
                                  timeout=float(_int("timeoutSeconds", timeout)) if timeout else None)
        events = watch.stream(self.server.store, rt, route.namespace or None, opts)
        try:
            item = next(events, StopIteration)  # a bad parameter is still an ordinary error response
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            while item is not StopIteration:
                if item is None:
                    if self._client_gone():
                        self.close_connection = True
                        return
                else:
                    self._chunk(json.dumps(item, separators=(",", ":")).encode() + b"\n")
                item = next(events, StopIteration)
            self._chunk(b"")
        except OSError:
            self.close_connection = True  # the client went away mid-stream
        finally:
            events.close()
            log(f'HTTP verb="WATCH" URI="{self.path}" user="{self.user.name}" resp=200 '
                f'srcIP="{self.client_address[0]}:{self.client_address[1]}"')

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _client_gone(self) -> bool:
        """A watch's client sends nothing more; readable means it closed (or broke) the connection."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable)


def _int(name: str, value: str) -> int:
    if not value:
        return 0
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f'strconv.ParseInt: parsing "{value}": invalid syntax (query parameter {name})') \
            from None


def _decode(kind: str, raw: bytes, content_type: str) -> Any:
    """A create, update or delete body. JSON only: the real server also decodes YAML and protobuf, and answers
    415 for what it does not; so does this one for everything but JSON (no Content-Type means JSON, its first
    type). kubectl's typed commands (``kubectl create configmap``) send protobuf and get that 415; see README."""
    if content_type not in ("", *BODY_TYPES):
        raise errors.unsupported_media_type(content_type, BODY_TYPES)
    try:
        return json.loads(raw or b"null")
    except ValueError as e:
        raise errors.bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: {e}') from None
