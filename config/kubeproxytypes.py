"""``kubeproxy.config.k8s.io/v1alpha1`` ``KubeProxyConfiguration`` as Go declares it, for type checking.

Reads: nothing. Writes: nothing. One field per field of k8s.io/kube-proxy/config/v1alpha1/types.go,
with its Go type from ``config.gotypes`` (v1.36-era source; see ``config.kubelettypes`` for what that
means for newer fields). Only types are checked, as Go's decoder checks them.
"""

from __future__ import annotations

from kubeboot.config.gotypes import (
    Bool,
    ClientConnectionConfiguration,
    Duration,
    GoStruct,
    Int32,
    LoggingConfiguration,
    Str,
)


class KubeProxyIPTablesConfiguration(GoStruct):
    masqueradeBit: Int32 | None = None
    masqueradeAll: Bool | None = None
    localhostNodePorts: Bool | None = None
    snatNodeInternalIP: Bool | None = None
    syncPeriod: Duration | None = None
    minSyncPeriod: Duration | None = None


class KubeProxyIPVSConfiguration(GoStruct):
    syncPeriod: Duration | None = None
    minSyncPeriod: Duration | None = None
    scheduler: Str | None = None
    excludeCIDRs: list[Str] | None = None
    strictARP: Bool | None = None
    tcpTimeout: Duration | None = None
    tcpFinTimeout: Duration | None = None
    udpTimeout: Duration | None = None


class KubeProxyNFTablesConfiguration(GoStruct):
    masqueradeBit: Int32 | None = None
    masqueradeAll: Bool | None = None
    syncPeriod: Duration | None = None
    minSyncPeriod: Duration | None = None


class KubeProxyConntrackConfiguration(GoStruct):
    maxPerCore: Int32 | None = None
    min: Int32 | None = None
    tcpEstablishedTimeout: Duration | None = None
    tcpCloseWaitTimeout: Duration | None = None
    tcpBeLiberal: Bool | None = None
    udpTimeout: Duration | None = None
    udpStreamTimeout: Duration | None = None


class KubeProxyWinkernelConfiguration(GoStruct):
    networkName: Str | None = None
    sourceVip: Str | None = None
    enableDSR: Bool | None = None
    rootHnsEndpointName: Str | None = None
    forwardHealthCheckVip: Bool | None = None


class DetectLocalConfiguration(GoStruct):
    bridgeInterface: Str | None = None
    interfaceNamePrefix: Str | None = None


class KubeProxyConfiguration(GoStruct):
    apiVersion: Str | None = None
    kind: Str | None = None
    featureGates: dict[str, Bool] | None = None
    clientConnection: ClientConnectionConfiguration | None = None
    logging: LoggingConfiguration | None = None
    hostnameOverride: Str | None = None
    bindAddress: Str | None = None
    healthzBindAddress: Str | None = None
    metricsBindAddress: Str | None = None
    bindAddressHardFail: Bool | None = None
    enableProfiling: Bool | None = None
    showHiddenMetricsForVersion: Str | None = None
    mode: Str | None = None
    iptables: KubeProxyIPTablesConfiguration | None = None
    ipvs: KubeProxyIPVSConfiguration | None = None
    nftables: KubeProxyNFTablesConfiguration | None = None
    winkernel: KubeProxyWinkernelConfiguration | None = None
    detectLocalMode: Str | None = None
    detectLocal: DetectLocalConfiguration | None = None
    clusterCIDR: Str | None = None
    nodePortAddresses: list[Str] | None = None
    oomScoreAdj: Int32 | None = None
    conntrack: KubeProxyConntrackConfiguration | None = None
    configSyncPeriod: Duration | None = None
    portRange: Str | None = None
    windowsRunAsService: Bool | None = None
