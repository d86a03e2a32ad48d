"""The ``certs`` phase and its sub-phases (kubeadm-spec 2.2; kubeadm's cmd/phases/init/certs.go).

Reads: the configuration, ``<pki>/*.crt|*.key`` and ``sa.key``/``sa.pub`` already on the node.
Writes: the missing or invalid ones, keys 0600 (keyutil.WriteKey, ``sa.pub`` included), certificates
0644 (certutil.WriteCert), directories 0755 (both use MkdirAll 0755); the key before its certificate,
like pkiutil.WriteCertAndKey. Once the cluster CA exists: the kubeboot node marker (``tasks.nodemarker``).

Convergence, per row of ``tasks.certlist`` (kubeadm behaviour unless marked *kubeboot*):
* CA cert + key valid: reused ("Using existing ca certificate authority"); an expired CA only warns.
* CA cert without key file: external CA mode ("keyless"): every leaf this CA signs must already exist,
  load, and verify against it, else ``PermanentError("invalid or incomplete external CA: ...")``.
* CA cert missing: generated. *kubeboot*: when ``ca.key`` survives alone (a write interrupted between
  key and certificate) the certificate is re-issued for that key, so the CA hash does not change.
* Leaf signed by another CA: ``PermanentError`` (kubeadm: "certificate X not signed by CA certificate
  Y"); re-signing silently would break every kubeconfig and peer that trusts the old chain.
* Leaf missing, unreadable, not matching its key, expired, or missing a SAN the configuration now asks
  for: *kubeboot* regenerates it when the CA key is here. kubeadm errors on unreadable pairs, only
  warns on expiry and, in ``init``, never re-checks SANs (users delete apiserver.crt by hand to add a
  certSAN); a retrying workflow needs the file it can prove right. In external CA mode nothing can be
  re-signed: a mismatched key is an error, expiry and missing SANs are warnings, as in kubeadm.
* An existing key of another algorithm than ``encryptionAlgorithm`` is kept (kubeadm never rotates on
  an algorithm change; ``kubeadm certs renew`` does).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from cryptography import x509

from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import pki
from kubeboot.tasks.certlist import CertRow, cert_table, leaves_of, rejected_sans, row, uses_etcd_ca
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.nodemarker import marker_record, read_node_marker, write_node_marker
from kubeboot.tasks.phases.context import NodeContext

__all__ = ["read_node_marker", "run_cert", "run_certs", "run_sa"]

KEY_MODE = 0o600
CERT_MODE = 0o644
SA = "sa"
# ctx.scratch entry: (encryptionAlgorithm, {base_name: Future[key]}) filled by run_certs.
SCRATCH_KEYS = "certs.keys"


def _paths(cfg: InitConfig, base: str) -> tuple[str, str]:
    return f"{cfg.pki_dir}/{base}.crt", f"{cfg.pki_dir}/{base}.key"


def _log(ctx: NodeContext, message: str) -> None:
    ctx.log("certs", message)


# --- parent phase: announce, and generate the keys ahead in parallel ------------------------------


def run_certs(ctx: NodeContext) -> None:
    _log(ctx, f'Using certificateDir folder "{ctx.cfg.cluster.certificatesDir}"')
    _prefetch_keys(ctx)


def _keys_needed(ctx: NodeContext) -> list[str]:
    """Base names whose key the sub-phases will have to generate (a cheap guess from file presence)."""
    def present(base: str) -> tuple[bool, bool]:
        crt, key = _paths(ctx.cfg, base)
        return ctx.fs.exists(crt), ctx.fs.exists(key)

    needed = []
    for r in cert_table(ctx.cfg):
        has_crt, has_key = present(r.base_name)
        if r.is_ca:
            if not has_crt and not has_key:  # a lone ca.crt is external CA mode, a lone ca.key is reused
                needed.append(r.base_name)
        elif not (has_crt and has_key) and present(row(r.ca or "").base_name) != (True, False):
            needed.append(r.base_name)  # (a keyless CA signs nothing: no key to prepare)
    if not ctx.fs.exists(_paths(ctx.cfg, SA)[1]):
        needed.append(SA)
    return needed


def _prefetch_keys(ctx: NodeContext) -> None:
    # RSA key generation dominates the phase and releases the GIL: generating the keys on
    # ctx.workers threads while the sub-phases sign and write keeps the cores busy.
    needed = _keys_needed(ctx)
    if ctx.workers < 2 or len(needed) < 2:
        return
    alg = ctx.cfg.cluster.encryptionAlgorithm
    pool = ThreadPoolExecutor(max_workers=ctx.workers, thread_name_prefix="certs-keygen")
    futures = {base: pool.submit(pki.generate_key, alg) for base in needed}
    pool.shutdown(wait=False)  # the futures finish on their own; nobody waits for the pool
    ctx.scratch[SCRATCH_KEYS] = (alg, futures)


def _new_key(ctx: NodeContext, base: str) -> pki.PrivateKey:
    alg = ctx.cfg.cluster.encryptionAlgorithm
    entry: Any = ctx.scratch.get(SCRATCH_KEYS)
    if entry is not None and entry[0] == alg:
        future: Future[pki.PrivateKey] | None = entry[1].pop(base, None)
        if future is not None:
            return future.result()
    return pki.generate_key(alg)


# --- one certificate ------------------------------------------------------------------------------


def run_cert(ctx: NodeContext, name: str) -> None:
    """Converge certificate ``name`` (a row of ``tasks.certlist``)."""
    r = row(name)
    if ctx.cfg.cluster.is_external_etcd and uses_etcd_ca(r):
        what = "certificate authority" if r.is_ca else "certificate"
        _log(ctx, f"External etcd mode: Skipping {r.base_name} {what} generation")
        return
    if not r.is_ca:
        _converge_leaf(ctx, r)
        return
    ca = _converge_ca(ctx, r)
    if r.name == "ca":
        cfg = ctx.cfg
        write_node_marker(ctx.fs, marker_record(cfg.cluster.clusterName, cfg.node_name, pki.ca_cert_hash(ca)))


def _read_pair(ctx: NodeContext, base: str) -> tuple[bytes | None, bytes | None]:
    crt, key = _paths(ctx.cfg, base)
    return ctx.fs.read_bytes(crt), ctx.fs.read_bytes(key)


def _write_pair(ctx: NodeContext, base: str, cert: x509.Certificate, key: pki.PrivateKey) -> None:
    crt, key_path = _paths(ctx.cfg, base)
    ctx.fs.write(key_path, pki.key_to_pem(key), mode=KEY_MODE)
    ctx.fs.write(crt, pki.cert_to_pem(cert), mode=CERT_MODE)


def _warn_period(ctx: NodeContext, base: str, cert: x509.Certificate) -> None:
    err = pki.period_error(cert, ctx.now)
    if err:
        _log(ctx, f"WARNING: could not validate bounds for certificate {base}: {err}")


def _converge_ca(ctx: NodeContext, r: CertRow) -> x509.Certificate:
    base = r.base_name
    crt_pem, key_pem = _read_pair(ctx, base)
    cert, key = pki.load_cert_or_none(crt_pem), pki.load_key_or_none(key_pem)
    if cert is None:
        return _create_ca(ctx, r, key)
    if not pki.is_ca(cert):
        raise PermanentError(f"certificate {base} is not a CA")
    _warn_period(ctx, base, cert)
    if key_pem is None:
        _check_external_ca(ctx, r, cert)
        _log(ctx, f"Using existing {base} keyless certificate authority")
        return cert
    if key is None:
        raise PermanentError(f"failure loading {base} certificate authority: {_bad_key(ctx, base)}")
    if not pki.key_matches_cert(key, cert):
        raise PermanentError(f"failure loading {base} certificate authority: {base}.key does not match {base}.crt")
    _log(ctx, f"Using existing {base} certificate authority")
    return cert


def _create_ca(ctx: NodeContext, r: CertRow, key: pki.PrivateKey | None) -> x509.Certificate:
    base = r.base_name
    if key is None:
        key = _new_key(ctx, base)
        _log(ctx, f'Generating "{base}" certificate and key')
    else:
        _log(ctx, f'Generating "{base}" certificate for the existing key {base}.key')
    cert = pki.build_certificate(r.spec(ctx.cfg), key.public_key(), key, None, ctx.now)
    _write_pair(ctx, base, cert, key)
    return cert


def _bad_key(ctx: NodeContext, base: str) -> str:
    return f"couldn't load the private key file {_paths(ctx.cfg, base)[1]}: not an RSA or ECDSA private key in PEM"


def _check_external_ca(ctx: NodeContext, ca: CertRow, ca_cert: x509.Certificate) -> None:
    """Without the CA key nothing can be signed: every leaf must already be there and right."""
    for leaf in leaves_of(ctx.cfg, ca.name):
        err = _external_leaf_error(ctx, leaf, ca_cert)
        if err:
            raise PermanentError(f"invalid or incomplete external {ca.ux_name}: {err}")


def _external_leaf_error(ctx: NodeContext, leaf: CertRow, ca_cert: x509.Certificate) -> str | None:
    """kubeadm's validateSignedCertWithCA, as a message (None when the leaf is usable)."""
    crt_path, key_path = _paths(ctx.cfg, leaf.base_name)
    crt_pem, key_pem = _read_pair(ctx, leaf.base_name)
    if key_pem is None:
        return f"failure loading key for {leaf.base_name}: couldn't load the private key file {key_path}: no such file"
    key = pki.load_key_or_none(key_pem)
    if key is None:
        return f"failure loading key for {leaf.base_name}: {_bad_key(ctx, leaf.base_name)}"
    cert = pki.load_cert_or_none(crt_pem)
    if cert is None:
        why = "no such file" if crt_pem is None else "not a PEM certificate"
        return f"failure loading certificate for {leaf.ux_name}: couldn't load the certificate file {crt_path}: {why}"
    sig = pki.signature_error(cert, ca_cert)
    if sig:
        return f"certificate {leaf.ux_name} is not signed by corresponding CA: {sig}"
    if not pki.key_matches_cert(key, cert):
        return f"the private key of {leaf.ux_name} ({key_path}) does not match its certificate"
    return None


def _load_ca(ctx: NodeContext, ca: CertRow) -> tuple[x509.Certificate, pki.PrivateKey | None]:
    """The signing CA of a leaf (kubeadm's LoadCertificateAuthority); key None in external CA mode."""
    crt_pem, key_pem = _read_pair(ctx, ca.base_name)
    prefix = f"couldn't load CA certificate {ca.name}"
    if crt_pem is None:
        raise PermanentError(f"{prefix}: couldn't load {ca.base_name} certificate authority from {ctx.cfg.pki_dir}")
    cert = pki.load_cert_or_none(crt_pem)
    if cert is None or not pki.is_ca(cert):
        raise PermanentError(f"{prefix}: {ca.base_name} certificate is not a certificate authority")
    key = pki.load_key_or_none(key_pem)
    if key_pem is not None and key is None:
        raise PermanentError(f"{prefix}: {_bad_key(ctx, ca.base_name)}")
    if key is not None and not pki.key_matches_cert(key, cert):
        raise PermanentError(f"{prefix}: {ca.base_name}.key does not match {ca.base_name}.crt")
    return cert, key


def _leaf_problem(
    ctx: NodeContext, cert: x509.Certificate, key: pki.PrivateKey, spec: pki.CertSpec
) -> tuple[str, bool] | None:
    """What is wrong with an existing leaf, and whether a keyless CA may keep it anyway (kubeadm does)."""
    if not pki.key_matches_cert(key, cert):
        return "does not match its private key", False
    period = pki.period_error(cert, ctx.now)
    if period:
        return f"is not usable now ({period})", True
    dns, ips = pki.missing_sans(cert, spec)
    if dns or ips:
        return f"is not valid for DNS names [{' '.join(dns)}] and IPs [{' '.join(ips)}]", True
    return None


def _converge_leaf(ctx: NodeContext, r: CertRow) -> None:
    assert r.ca is not None
    ca = row(r.ca)
    ca_cert, ca_key = _load_ca(ctx, ca)
    base = r.base_name
    for bad in rejected_sans(ctx.cfg, r.name):
        _log(ctx, f"WARNING: '{bad}' was not added to the '{base}' SAN, because it is not a valid IP or "
                  "RFC-1123 compliant DNS entry")
    spec = r.spec(ctx.cfg)
    crt_pem, key_pem = _read_pair(ctx, base)
    cert, key = pki.load_cert_or_none(crt_pem), pki.load_key_or_none(key_pem)
    if cert is not None and key is not None:
        sig = pki.signature_error(cert, ca_cert)
        if sig:
            crt, key_path = _paths(ctx.cfg, base)
            raise PermanentError(
                f"certificate {base} not signed by CA certificate {ca.base_name}: {sig} "
                f"(remove {crt} and {key_path} to have it issued again by the current CA)"
            )
        found = _leaf_problem(ctx, cert, key, spec)
        if found is None:
            _log(ctx, f"Using existing {base} certificate and key on disk")
            return
        problem, keepable = found
        if ca_key is None and keepable:
            _log(ctx, f"WARNING: existing {base} certificate {problem}; keeping it (external CA mode)")
            _log(ctx, f"Using existing {base} certificate and key on disk")
            return
        if ca_key is None:
            raise PermanentError(f"invalid or incomplete external {ca.ux_name}: certificate {base} {problem}")
        _log(ctx, f"Existing {base} certificate {problem}: generating it again")
    elif ca_key is None:
        raise PermanentError(f"invalid or incomplete external {ca.ux_name}: {_external_leaf_error(ctx, r, ca_cert)}")
    _create_leaf(ctx, r, spec, ca_cert, ca_key)


def _create_leaf(
    ctx: NodeContext, r: CertRow, spec: pki.CertSpec, ca_cert: x509.Certificate, ca_key: pki.PrivateKey
) -> None:
    base = r.base_name
    key = _new_key(ctx, base)
    _log(ctx, f'Generating "{base}" certificate and key')
    cert = pki.build_certificate(spec, key.public_key(), ca_key, ca_cert, ctx.now)
    _write_pair(ctx, base, cert, key)
    if pki.has_server_auth(cert):
        dns, ips = pki.cert_sans(cert)
        _log(ctx, f"{base} serving cert is signed for DNS names [{' '.join(dns)}] and IPs [{' '.join(ips)}]")


# --- service-account signing key -------------------------------------------------------------------


def run_sa(ctx: NodeContext) -> None:
    """``sa.key`` + ``sa.pub`` (PKIX ``PUBLIC KEY``); an existing loadable key is reused."""
    key_path, pub_path = f"{ctx.cfg.pki_dir}/{SA}.key", f"{ctx.cfg.pki_dir}/{SA}.pub"
    key_pem = ctx.fs.read_bytes(key_path)
    key = pki.load_key_or_none(key_pem)
    if key is not None:
        _log(ctx, f'Using the existing "{SA}" key')
    else:
        if key_pem is not None:  # kubeadm errors here; a key nobody can read signs nothing
            _log(ctx, f"WARNING: {key_path} existed but it could not be loaded properly: generating it again")
        key = _new_key(ctx, SA)
        _log(ctx, f'Generating "{SA}" key and public key')
        ctx.fs.write(key_path, pki.key_to_pem(key), mode=KEY_MODE)
    _ensure_public_key(ctx, pub_path, key)


def _ensure_public_key(ctx: NodeContext, pub_path: str, key: pki.PrivateKey) -> None:
    """Write ``sa.pub`` unless it already holds this key's public half (any mode: kept as found)."""
    want = pki.public_key_der(key.public_key())
    pem = ctx.fs.read_bytes(pub_path)
    if pem is not None:
        try:
            if pki.public_key_der(pki.load_public_key(pem)) == want:
                return
        except ValueError:
            pass
    ctx.fs.write(pub_path, pki.public_key_to_pem(key.public_key()), mode=KEY_MODE)
