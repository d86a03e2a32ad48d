"""``kubelet.config.k8s.io/v1beta1`` ``KubeletConfiguration`` as Go declares it, for type checking.

Reads: nothing. Writes: nothing. One field per field of k8s.io/kubelet/config/v1beta1/types.go
(``KubeletConfiguration`` and the structs it embeds), with its Go type from ``config.gotypes``; read
from the v1.36-era source, so a field added in a later minor than the target is accepted rather than
warned about. Only the types are checked here (what Go's decoder checks); the kubelet validates values
when it starts, as it does for a kubeadm-made file. kubeadm's own defaults are applied elsewhere
(``tasks.kubeletconfig``).
"""

from __future__ import annotations

from kubeboot.config.gotypes import (
    Bool,
    Duration,
    Float,
    GoStruct,
    Int32,
    Int64,
    LoggingConfiguration,
    Quantity,
    Str,
    Taint,
    TracingConfiguration,
)


class KubeletX509Authentication(GoStruct):
    clientCAFile: Str | None = None


class KubeletWebhookAuthentication(GoStruct):
    enabled: Bool | None = None
    cacheTTL: Duration | None = None


class KubeletAnonymousAuthentication(GoStruct):
    enabled: Bool | None = None


class KubeletAuthentication(GoStruct):
    x509: KubeletX509Authentication | None = None
    webhook: KubeletWebhookAuthentication | None = None
    anonymous: KubeletAnonymousAuthentication | None = None


class KubeletWebhookAuthorization(GoStruct):
    cacheAuthorizedTTL: Duration | None = None
    cacheUnauthorizedTTL: Duration | None = None


class KubeletAuthorization(GoStruct):
    mode: Str | None = None
    webhook: KubeletWebhookAuthorization | None = None


class MemorySwapConfiguration(GoStruct):
    swapBehavior: Str | None = None


class ShutdownGracePeriodByPodPriority(GoStruct):
    priority: Int32 | None = None
    shutdownGracePeriodSeconds: Int64 | None = None


class CrashLoopBackOffConfig(GoStruct):
    maxContainerRestartPeriod: Duration | None = None


class MemoryReservation(GoStruct):
    numaNode: Int32 | None = None
    limits: dict[str, Quantity] | None = None


class UserNamespaces(GoStruct):
    idsPerPod: Int64 | None = None


StrMap = dict[str, Str]


class KubeletConfiguration(GoStruct):
    apiVersion: Str | None = None
    kind: Str | None = None
    enableServer: Bool | None = None
    staticPodPath: Str | None = None
    podLogsDir: Str | None = None
    syncFrequency: Duration | None = None
    fileCheckFrequency: Duration | None = None
    httpCheckFrequency: Duration | None = None
    staticPodURL: Str | None = None
    staticPodURLHeader: dict[str, list[Str]] | None = None
    address: Str | None = None
    port: Int32 | None = None
    readOnlyPort: Int32 | None = None
    tlsCertFile: Str | None = None
    tlsPrivateKeyFile: Str | None = None
    tlsCipherSuites: list[Str] | None = None
    tlsCurvePreferences: list[Int32] | None = None
    tlsMinVersion: Str | None = None
    rotateCertificates: Bool | None = None
    serverTLSBootstrap: Bool | None = None
    authentication: KubeletAuthentication | None = None
    authorization: KubeletAuthorization | None = None
    registryPullQPS: Int32 | None = None
    registryBurst: Int32 | None = None
    imagePullCredentialsVerificationPolicy: Str | None = None
    preloadedImagesVerificationAllowlist: list[Str] | None = None
    eventRecordQPS: Int32 | None = None
    eventBurst: Int32 | None = None
    enableDebuggingHandlers: Bool | None = None
    enableContentionProfiling: Bool | None = None
    healthzPort: Int32 | None = None
    healthzBindAddress: Str | None = None
    oomScoreAdj: Int32 | None = None
    clusterDomain: Str | None = None
    clusterDNS: list[Str] | None = None
    streamingConnectionIdleTimeout: Duration | None = None
    nodeStatusUpdateFrequency: Duration | None = None
    nodeStatusReportFrequency: Duration | None = None
    nodeLeaseDurationSeconds: Int32 | None = None
    imageMinimumGCAge: Duration | None = None
    imageMaximumGCAge: Duration | None = None
    imageGCHighThresholdPercent: Int32 | None = None
    imageGCLowThresholdPercent: Int32 | None = None
    volumeStatsAggPeriod: Duration | None = None
    kubeletCgroups: Str | None = None
    systemCgroups: Str | None = None
    cgroupRoot: Str | None = None
    cgroupsPerQOS: Bool | None = None
    cgroupDriver: Str | None = None
    cpuManagerPolicy: Str | None = None
    singleProcessOOMKill: Bool | None = None
    cpuManagerPolicyOptions: StrMap | None = None
    cpuManagerReconcilePeriod: Duration | None = None
    draManagerReconcilePeriod: Duration | None = None
    memoryManagerPolicy: Str | None = None
    topologyManagerPolicy: Str | None = None
    topologyManagerScope: Str | None = None
    topologyManagerPolicyOptions: StrMap | None = None
    qosReserved: StrMap | None = None
    runtimeRequestTimeout: Duration | None = None
    hairpinMode: Str | None = None
    maxPods: Int32 | None = None
    podCIDR: Str | None = None
    podPidsLimit: Int64 | None = None
    resolvConf: Str | None = None
    runOnce: Bool | None = None
    cpuCFSQuota: Bool | None = None
    cpuCFSQuotaPeriod: Duration | None = None
    nodeStatusMaxImages: Int32 | None = None
    maxOpenFiles: Int64 | None = None
    contentType: Str | None = None
    kubeAPIQPS: Int32 | None = None
    kubeAPIBurst: Int32 | None = None
    serializeImagePulls: Bool | None = None
    maxParallelImagePulls: Int32 | None = None
    evictionHard: StrMap | None = None
    evictionSoft: StrMap | None = None
    evictionSoftGracePeriod: StrMap | None = None
    evictionPressureTransitionPeriod: Duration | None = None
    evictionMaxPodGracePeriod: Int32 | None = None
    evictionMinimumReclaim: StrMap | None = None
    mergeDefaultEvictionSettings: Bool | None = None
    podsPerCore: Int32 | None = None
    enableControllerAttachDetach: Bool | None = None
    protectKernelDefaults: Bool | None = None
    makeIPTablesUtilChains: Bool | None = None
    iptablesMasqueradeBit: Int32 | None = None
    iptablesDropBit: Int32 | None = None
    featureGates: dict[str, Bool] | None = None
    failSwapOn: Bool | None = None
    memorySwap: MemorySwapConfiguration | None = None
    containerLogMaxSize: Str | None = None
    containerLogMaxFiles: Int32 | None = None
    containerLogMaxWorkers: Int32 | None = None
    containerLogMonitorInterval: Duration | None = None
    configMapAndSecretChangeDetectionStrategy: Str | None = None
    systemReserved: StrMap | None = None
    kubeReserved: StrMap | None = None
    reservedSystemCPUs: Str | None = None
    showHiddenMetricsForVersion: Str | None = None
    systemReservedCgroup: Str | None = None
    kubeReservedCgroup: Str | None = None
    enforceNodeAllocatable: list[Str] | None = None
    allowedUnsafeSysctls: list[Str] | None = None
    volumePluginDir: Str | None = None
    providerID: Str | None = None
    kernelMemcgNotification: Bool | None = None
    logging: LoggingConfiguration | None = None
    enableSystemLogHandler: Bool | None = None
    enableSystemLogQuery: Bool | None = None
    shutdownGracePeriod: Duration | None = None
    shutdownGracePeriodCriticalPods: Duration | None = None
    shutdownGracePeriodByPodPriority: list[ShutdownGracePeriodByPodPriority] | None = None
    crashLoopBackOff: CrashLoopBackOffConfig | None = None
    reservedMemory: list[MemoryReservation] | None = None
    enableProfilingHandler: Bool | None = None
    enableDebugFlagsHandler: Bool | None = None
    seccompDefault: Bool | None = None
    memoryThrottlingFactor: Float | None = None
    memoryReservationPolicy: Str | None = None
    registerWithTaints: list[Taint] | None = None
    registerNode: Bool | None = None
    tracing: TracingConfiguration | None = None
    localStorageCapacityIsolation: Bool | None = None
    containerRuntimeEndpoint: Str | None = None
    imageServiceEndpoint: Str | None = None
    failCgroupV1: Bool | None = None
    userNamespaces: UserNamespaces | None = None
