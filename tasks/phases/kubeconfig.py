"""The ``kubeconfig`` phase (kubeadm-spec 2.3): admin, super-admin, kubelet, controller-manager and
scheduler kubeconfig files, each with a client certificate signed by the cluster CA.

Reads:  ``<pki>/ca.crt`` and ``<pki>/ca.key`` (from the certs phase); existing ``/etc/kubernetes/*.conf``.
Writes: ``/etc/kubernetes/{admin,super-admin,kubelet,controller-manager,scheduler}.conf``, mode 0600,
        only when missing (or when its embedded client certificate no longer works, see below);
        run secret ``admin.conf`` (the control worker's credentials; super-admin.conf is never shared).

Convergence follows kubeadm's createKubeConfigFileIfNotExists: an existing file whose CA is ca.crt is
reused ("Using existing kubeconfig file"); a different API server URL is only a warning; a different
CA is an error a person must resolve. kubeboot goes one step further than kubeadm, which trusts the
embedded client certificate blindly: one that is expired, not signed by ca.crt or not matching its
key is re-issued when ca.key is at hand, and is an error in External CA mode (ca.key absent), where
every file must be provided valid by the user.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from kubeboot.config import constants as c
from kubeboot.tasks import kubeconfig as kc
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.phases.context import NodeContext
from kubeboot.tasks.pki import (
    CLIENT_AUTH,
    CertSpec,
    PrivateKey,
    build_certificate,
    cert_to_pem,
    generate_key,
    key_matches_algorithm,
    key_to_pem,
    load_cert,
    load_key,
)

PHASE = "kubeconfig"
FILE_MODE = 0o600
# ctx.scratch key: client keys generated ahead, in parallel, by the parent phase ({phase name: key}).
SCRATCH_KEYS = "kubeconfig.client-keys"


@dataclass(frozen=True)
class ClusterCA:
    cert: x509.Certificate
    pem: bytes  # as kubeadm embeds it: the certificate re-encoded, not the file's bytes
    key: PrivateKey | None  # None: External CA mode


def _load_ca(ctx: NodeContext) -> ClusterCA:
    crt_path, key_path = f"{ctx.cfg.pki_dir}/ca.crt", f"{ctx.cfg.pki_dir}/ca.key"
    crt = ctx.fs.read_bytes(crt_path)
    if crt is None:
        raise PermanentError(
            f"the CA files do not exist, please run `kubeboot init phase certs/ca` to generate it: "
            f"{crt_path} is missing"
        )
    key_pem = ctx.fs.read_bytes(key_path)
    try:
        cert = load_cert(crt)
        key = load_key(key_pem) if key_pem is not None else None
    except ValueError as e:
        raise PermanentError(f"couldn't create a kubeconfig; the CA files couldn't be loaded: {e}") from None
    if not cert.not_valid_before_utc <= ctx.now <= cert.not_valid_after_utc:
        # kubeadm's CheckCertificatePeriodValidity: a warning, the files are still written.
        ctx.log(PHASE, f'WARNING: could not validate bounds for certificate "ca": not valid at {ctx.now:%FT%TZ}')
    return ClusterCA(cert, cert_to_pem(cert), key)


# --- parent --------------------------------------------------------------------------------------


def run_kubeconfig(ctx: NodeContext) -> None:
    """Announce the folder, then generate the missing files' client keys in parallel for the children."""
    ctx.log(PHASE, f'Using kubeconfig folder "{c.KUBERNETES_DIR}"')
    if not ctx.fs.exists(f"{ctx.cfg.pki_dir}/ca.key"):
        return  # External CA mode or no CA yet: the children report it, no key will be needed
    missing = [f.phase for f in kc.KUBECONFIG_FILES if not ctx.fs.exists(f.path())]
    if len(missing) < 2:
        return
    alg = ctx.cfg.cluster.encryptionAlgorithm
    # Key generation (RSA especially) releases the GIL: threads give real parallelism here.
    with ThreadPoolExecutor(max_workers=max(1, ctx.workers)) as pool:
        keys = list(pool.map(lambda _: generate_key(alg), missing))
    ctx.scratch.setdefault(SCRATCH_KEYS, {}).update(zip(missing, keys, strict=True))


def _client_key(ctx: NodeContext, phase: str) -> PrivateKey:
    alg = ctx.cfg.cluster.encryptionAlgorithm
    key: PrivateKey | None = ctx.scratch.get(SCRATCH_KEYS, {}).pop(phase, None)
    if isinstance(key, RSAPrivateKey | EllipticCurvePrivateKey) and key_matches_algorithm(key, alg):
        return key
    return generate_key(alg)


# --- one file ------------------------------------------------------------------------------------


# The control worker reaches the API with these; it finds them in the run's (encrypted) secrets.
# Not super-admin.conf: its one user, wait-control-plane's kubeadm:cluster-admins binding, is a
# node phase and reads the node's file; a break-glass credential stays on its machine, as in kubeadm.
SHARED_WITH_CONTROL = (c.ADMIN_CONF,)


def run_kubeconfig_file(ctx: NodeContext, name: str) -> None:
    """kubeconfig/<name>: create the file, or reuse a valid existing one."""
    _converge_file(ctx, name)
    spec = kc.BY_PHASE[name]
    if spec.file_name in SHARED_WITH_CONTROL:
        data = ctx.fs.read_bytes(spec.path())
        if data is not None:
            ctx.secrets.put(spec.file_name, data)


def _converge_file(ctx: NodeContext, name: str) -> None:
    spec = kc.BY_PHASE[name]
    ca = _load_ca(ctx)
    server = kc.server_for(spec, ctx.cfg)
    if ca.key is None:
        _check_user_provided(ctx, spec, ca, server)
        ctx.log(PHASE, f"External CA mode: Using user provided {spec.file_name}")
        return
    text = ctx.fs.read_text(spec.path())
    if text is not None:
        problem = kc.credential_problem(_validate(ctx, spec, ca, server, text), ca.cert, ctx.now)
        if problem is None:
            ctx.log(PHASE, f'Using existing kubeconfig file: "{spec.path()}"')
            return
        ctx.log(PHASE, f'Re-issuing the client certificate of "{spec.file_name}": {problem}')
    ctx.log(PHASE, f'Writing "{spec.file_name}" kubeconfig file')
    ctx.fs.write(spec.path(), _render(ctx, spec, ca, server), mode=FILE_MODE)


def _validate(
    ctx: NodeContext, spec: kc.KubeconfigFile, ca: ClusterCA, server: str, text: str
) -> kc.Kubeconfig:
    """kubeadm's validateKubeConfig: same CA (error otherwise), same server (warning otherwise)."""
    path = spec.path()
    try:
        parsed = kc.parse(text)
    except kc.KubeconfigError as e:
        raise PermanentError(f"failed to load kubeconfig file {path} that already exists on disk: {e}") from None
    current_ca = parsed.ca_data
    if not current_ca.strip() and parsed.ca_file:
        # kubeadm falls back to the file a `certificate-authority:` path names.
        current_ca = ctx.fs.read_bytes(parsed.ca_file) or b""
    if not kc.same_ca(current_ca, ca.pem):
        raise PermanentError(f'a kubeconfig file "{path}" exists already but has got the wrong CA cert')
    if parsed.server != server:
        ctx.log(
            PHASE,
            f'WARNING: a kubeconfig file "{path}" exists already but has an unexpected API Server URL: '
            f"expected: {server}, got: {parsed.server}",
        )
    return parsed


def _check_user_provided(ctx: NodeContext, spec: kc.KubeconfigFile, ca: ClusterCA, server: str) -> None:
    """External CA mode (kubeadm's ValidateKubeconfigsForExternalCA): the file must be there and valid."""
    prefix = f"the {spec.file_name} file does not exists or it is not valid"
    text = ctx.fs.read_text(spec.path())
    if text is None:
        raise PermanentError(f"{prefix}: {spec.path()}: no such file or directory")
    try:
        parsed = _validate(ctx, spec, ca, server, text)
    except PermanentError as e:
        raise PermanentError(f"{prefix}: {e}") from None
    problem = kc.credential_problem(parsed, ca.cert, ctx.now)
    if problem:
        raise PermanentError(f"{prefix}: {problem}")


def _render(ctx: NodeContext, spec: kc.KubeconfigFile, ca: ClusterCA, server: str) -> str:
    assert ca.key is not None  # only called outside External CA mode
    user = kc.client_name(spec, ctx.cfg)
    key = _client_key(ctx, spec.phase)
    cert_spec = CertSpec(
        common_name=user,
        organization=spec.organizations,
        usages=(CLIENT_AUTH,),
        validity_seconds=ctx.cfg.cert_validity_seconds,
    )
    cert = build_certificate(cert_spec, key.public_key(), ca.key, ca.cert, ctx.now)
    doc = kc.kubeconfig_with_certs(
        server, ctx.cfg.cluster.clusterName, user, ca.pem, key_to_pem(key), cert_to_pem(cert)
    )
    return kc.dump(doc)
