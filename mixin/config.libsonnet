// Every selector, label name, threshold and `for` duration of the mixin.
// Override any of them by merging an object into _config, e.g.
//   (import 'mixin.libsonnet') + { _config+:: { clusterLabel: 'job' } }
{
  _config+:: {
    // Selector for the series etcd-monitor exports (etcd_monitor_*).
    exporterSelector: 'job="etcd-monitor"',
    // Selector for etcd's own /metrics, scraped from every member directly. It leaves out
    // etcd-monitor's own job, which the regex alone matches: the exporter's target down is not an
    // etcd member down.
    etcdSelector: 'job=~".*etcd.*", job!="etcd-monitor"',
    // The label that names an etcd cluster on every series. The scrape config sets it
    // (see docs/mixin.md); set it to 'job' when every cluster has its own scrape job.
    clusterLabel: 'cluster',

    // Where the runbooks live; each alert links to '<runbookURL>#<alertname lowercased>'.
    runbookURL: 'https://github.com/etcd-monitor/etcd-monitor/blob/main/docs/runbooks.md',

    // Exporter.
    exporterDownFor: '5m',
    collectorFailingFor: '15m',

    // Cluster health as seen by etcd-monitor.
    unreachableFor: '2m',
    memberDownFor: '5m',  // longer than one member's restart during a rolling restart
    quorumAtRiskFor: '5m',
    quorumLostFor: '1m',
    noLeaderFor: '1m',
    splitBrainFor: '2m',  // a deposed leader may claim leadership for an election timeout
    partitionedFor: '5m',
    // A member whose raft index did not move over this window while another member's did.
    partitionedStallWindow: '5m',
    // Entries the cluster committed that this member has not applied yet. etcd refuses new
    // requests (ErrTooManyRequests) once its own gap reaches 5000 (maxGapBetweenApplyAndCommitIndex).
    applyLagThreshold: 1000,
    applyLagFor: '10m',
    // Elections (raft term increments) beyond one per member restart within the window.
    // With pre-vote (the default since etcd 3.5) a follower's restart does not start an election.
    leaderChangesThreshold: 3,
    leaderChangesWindow: '1h',
    leaderChangesFor: '5m',

    // Alarms.
    noSpaceAlarmFor: '0m',
    corruptAlarmFor: '0m',

    // Database size against quota, as a fraction of the quota, in three tiers.
    dbQuotaInfoRatio: 0.65,
    dbQuotaWarningRatio: 0.80,
    dbQuotaCriticalRatio: 0.90,
    dbQuotaFor: '10m',
    // Used when the member does not report its quota (etcd 3.5): etcd's default, 2 GiB.
    defaultQuotaBytes: 2 * 1024 * 1024 * 1024,
    // Fast growth: predicted (linear fit over the window) to reach the quota within the horizon,
    // and grown by at least dbGrowthMinBytes over the window (ignores shrinkage and small growth).
    dbGrowthWindow: '4h',
    dbGrowthHorizonSeconds: 4 * 3600,
    dbGrowthMinBytes: 100 * 1024 * 1024,
    dbGrowthFor: '10m',
    // Fragmentation: share of the file not in use, and at least this many reclaimable bytes.
    fragmentationRatio: 0.5,
    fragmentationMinBytes: 256 * 1024 * 1024,
    fragmentationFor: '30m',

    // Backups (docs/backup.md): series pushed by `etcd-monitor snapshot save --pushgateway.url`
    // and the exporter's backup collector. A backup is expected every backupMaxAgeSeconds; the
    // slack covers a run's own duration and the schedule's jitter.
    backupSelector: 'job="etcd_backup"',
    backupMaxAgeSeconds: 24 * 3600,
    backupAgeSlackSeconds: 3600,
    backupTooOldFor: '15m',
    // A CronJob's retry after a failed run has this long to succeed before the alert fires.
    backupFailingFor: '10m',
    backupUnverifiedFor: '10m',
    backupMismatchFor: '0m',
    backupNoFilesFor: '1h',
    backupMissingFor: '1h',
    // The clusters (etcd_monitor_up series) that must have backups; narrow it to spare test
    // clusters, e.g. 'job="etcd-monitor", cluster!~"dev-.*"'.
    backupExpectedSelector: self.exporterSelector,

    // Probe latency (the exporter's real read against each member), p95 over probeWindow.
    probeWindow: '5m',
    probeLatencyThresholdSeconds: 0.1,
    probeLatencyFor: '10m',

    // Certificates (the certificates collector). Expiring soon: under min(days, ratio of the
    // certificate's own lifetime) left. 1-year kubeadm certificates warn at 28 days, 90-day
    // cert-manager ones at 18 days (20%), a 24-hour one at 4.8 hours.
    certificateWarningDays: 28,
    certificateWarningLifetimeRatio: 0.20,
    certificateCriticalDays: 7,
    certificateCriticalLifetimeRatio: 0.05,
    certificateExpiringFor: '15m',
    certificateNotVerifiedFor: '15m',
    certificateCheckFailingFor: '30m',
    // Older than this, the last check no longer vouches for the certificates (several
    // --certificates.interval, default 10m).
    certificateCheckStaleSeconds: 3600,

    mixedVersionsFor: '1h',  // a rolling upgrade runs mixed versions for a while

    // etcd's own metrics (thresholds from etcd's docs: WAL fsync p99 < 10 ms, backend commit p99 < 25 ms).
    failedProposalsThreshold: 10,
    failedProposalsWindow: '30m',
    failedProposalsFor: '5m',
    walFsyncWarningSeconds: 0.010,
    walFsyncCriticalSeconds: 0.100,  // one heartbeat interval: followers start missing heartbeats
    backendCommitWarningSeconds: 0.025,
    backendCommitCriticalSeconds: 0.250,
    diskLatencyFor: '10m',
    // Election timeout (default 1 s) should be at least 10x the peer round trip.
    peerRTTWarningSeconds: 0.1,
    peerRTTFor: '10m',
    grpcFailedWarningPercent: 1,
    grpcFailedCriticalPercent: 5,
    grpcFailedFor: '10m',
    grpcFailedCriticalFor: '5m',
    // A method's requests per second on a member below which its failures do not alert (OpenShift's
    // etcd alerts use 2).
    grpcFailedMinRequestRate: 2,
    // Codes that mean the server failed. Left out: FailedPrecondition (etcd refusing a request that
    // cannot apply: unknown user or role, member already added, learner not ready, auth not enabled),
    // and the client's own codes (Canceled, InvalidArgument, NotFound, AlreadyExists,
    // PermissionDenied, Unauthenticated, OutOfRange for a compacted revision). DeadlineExceeded stays:
    // a healthy member answers within any sane deadline.
    grpcFailedCodes: ['Unknown', 'ResourceExhausted', 'Internal', 'Unavailable', 'DataLoss', 'DeadlineExceeded'],
    // Needs etcd's --metrics=extensive (grpc_server_handling_seconds); silent otherwise, and the
    // probe latency alert covers read latency on a default etcd.
    grpcSlowThresholdSeconds: 0.15,
    grpcSlowFor: '10m',

    // Consistency (HashKV compared across members, docs/consistency.md). A differing hash is a
    // fact of one check, served until the next (--consistency.interval): no need to wait.
    dataInconsistentFor: '0m',
    // No check compared the members for this long while at least two voters answer.
    consistencyStaleFor: '1h',

    // Window for rate() and histogram_quantile() in recording rules.
    rateWindow: '5m',

    // Dashboards.
    dashboardTags: ['etcd', 'etcd-monitor'],
    dashboardRefresh: '30s',
    dashboardTimezone: 'utc',
    dashboardUIDPrefix: 'etcd-monitor-',
    // Selector for the benchmark results etcd-monitor pushes to a Pushgateway.
    benchmarkSelector: 'job="etcd_benchmark"',

    // Alertmanager example (alerts/alertmanager.yml). Secrets are read from files only.
    alertmanager: {
      secretsDir: '/etc/alertmanager/secrets',
      pagerdutyRoutingKeyFile: self.secretsDir + '/pagerduty-routing-key',
      slackAPIURLFile: self.secretsDir + '/slack-api-url',
      slackChannel: '#etcd-alerts',
      emailTo: 'etcd-oncall@example.com',
      emailFrom: 'alertmanager@example.com',
      smtpSmarthost: 'smtp.example.com:587',
      smtpAuthUsername: 'alertmanager@example.com',
      smtpAuthPasswordFile: self.secretsDir + '/smtp-password',
      webhookURLFile: self.secretsDir + '/webhook-url',
      groupWait: '30s',
      groupInterval: '5m',
      repeatInterval: '4h',
    },
  },
}
