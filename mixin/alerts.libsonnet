local util = import 'lib/util.libsonnet';
{
  local c = $._config,
  local v = c { cl: c.clusterLabel },
  local cluster = '{{ $labels.%s }}' % c.clusterLabel,
  local member = '{{ $labels.member }} ({{ $labels.member_id }})',
  local instance = '{{ $labels.instance }}',

  local alert(name, severity, forDuration, expr, summary, description) = {
    alert: name,
    expr: expr,
    labels: { severity: severity },
    annotations: {
      summary: summary,
      description: description,
      runbook_url: '%s#%s' % [c.runbookURL, util.anchor(name)],
    },
  } + (if forDuration == '0m' || forDuration == '0s' then {} else { 'for': forDuration }),

  // Alerts on the exporter itself.
  local exporterAlerts = [
    alert(
      'EtcdMonitorExporterDown', 'warning', c.exporterDownFor,
      'up{%(exporterSelector)s} == 0' % c,
      'etcd-monitor cannot be scraped.',
      'Prometheus cannot scrape etcd-monitor %s of cluster %s: the cross-member alerts (quorum, split brain, alarms, probes) for that cluster are blind.' % [instance, cluster],
    ),
    alert(
      'EtcdMonitorCollectorFailing', 'warning', c.collectorFailingFor,
      'etcd_monitor_scrape_collector_success{%(exporterSelector)s} == 0' % c,
      'An etcd-monitor collector keeps failing.',
      'Collector {{ $labels.collector }} of etcd-monitor %s has failed every scrape of cluster %s for %s: its metrics are missing.' % [instance, cluster, c.collectorFailingFor],
    ),
  ],

  // Cluster health as etcd-monitor sees it from outside.
  local clusterAlerts = [
    alert(
      'EtcdUnreachable', 'critical', c.unreachableFor,
      'etcd_monitor_up{%(exporterSelector)s} == 0' % c,
      'No etcd member answers.',
      'etcd-monitor %s has reached no member of cluster %s for %s: the cluster is down or unreachable from the exporter.' % [instance, cluster, c.unreachableFor],
    ),
    alert(
      'EtcdMemberDown', 'warning', c.memberDownFor,
      'etcd_monitor_member_up{%(exporterSelector)s} == 0' % c,
      'An etcd member does not answer.',
      'Member %s of cluster %s has not answered Status for %s.' % [member, cluster, c.memberDownFor],
    ),
    // Only voting members make a quorum: voting_members_up leaves learners out (a learner that
    // answers must not hide a hung voter). The second clause spares a single voter, which is always
    // exactly its own quorum.
    alert(
      'EtcdQuorumAtRisk', 'critical', c.quorumAtRiskFor,
      |||
        (etcd_monitor_cluster_voting_members_up{%(exporterSelector)s} <= etcd_monitor_cluster_quorum{%(exporterSelector)s})
        and (etcd_monitor_cluster_voting_members_up{%(exporterSelector)s} < etcd_monitor_cluster_members{%(exporterSelector)s} - etcd_monitor_cluster_learners{%(exporterSelector)s})
        and (etcd_monitor_cluster_has_quorum{%(exporterSelector)s} == 1)
      ||| % c,
      'One more voting member failure ends the quorum of an etcd cluster.',
      'Cluster %s has exactly its quorum of voting members up ({{ $value }}; learners do not count): one more voting member failure stops all writes.' % [cluster],
    ),
    // has_quorum is the verdict (a quorum of voters up and naming one leader); voting_members_up
    // gives the alert its value, so the page says how many voters answer.
    alert(
      'EtcdQuorumLost', 'critical', c.quorumLostFor,
      |||
        etcd_monitor_cluster_voting_members_up{%(exporterSelector)s}
        and etcd_monitor_cluster_has_quorum{%(exporterSelector)s} == 0
        and etcd_monitor_up{%(exporterSelector)s} == 1
      ||| % c,
      'An etcd cluster has lost quorum.',
      'Cluster %s has lost its quorum: fewer than a quorum of its voting members are up and name the same leader (voting members up: {{ $value }}; learners do not count). Writes and linearizable reads fail.' % [cluster],
    ),
    alert(
      'EtcdNoLeader', 'critical', c.noLeaderFor,
      |||
        etcd_monitor_cluster_leaders{%(exporterSelector)s} == 0
        and etcd_monitor_up{%(exporterSelector)s} == 1
      ||| % c,
      'No etcd member knows a leader.',
      'No reachable member of cluster %s has known a leader for %s: the cluster cannot serve writes.' % [cluster, c.noLeaderFor],
    ),
    alert(
      'EtcdSplitBrain', 'critical', c.splitBrainFor,
      'etcd_monitor_cluster_leaders{%(exporterSelector)s} > 1' % c,
      'etcd members disagree on who is the leader.',
      'The reachable members of cluster %s name {{ $value }} different leaders: a deposed leader is cut off from its peers (partition).' % [cluster],
    ),
    alert(
      'EtcdMemberPartitioned', 'warning', c.partitionedFor,
      |||
        (
          etcd_monitor_member_has_leader{%(exporterSelector)s} == 0
          and etcd_monitor_member_up{%(exporterSelector)s} == 1
        )
        or
        (
          changes(etcd_monitor_member_raft_index{%(exporterSelector)s}[%(partitionedStallWindow)s]) == 0
          and etcd_monitor_member_up{%(exporterSelector)s} == 1
          and on (%(cl)s) (max by (%(cl)s) (changes(etcd_monitor_member_raft_index{%(exporterSelector)s}[%(partitionedStallWindow)s])) > 0)
        )
      ||| % v,
      'An etcd member is cut off from its peers.',
      'Member %s of cluster %s answers but knows no leader, or its raft index has not moved for %s while other members advanced: it is partitioned from its peers.' % [member, cluster, c.partitionedStallWindow],
    ),
    alert(
      'EtcdMemberApplyLagging', 'warning', c.applyLagFor,
      |||
        cluster_member:etcd_monitor_raft_apply_lag:sub{%(exporterSelector)s} > %(applyLagThreshold)s
        and etcd_monitor_member_up{%(exporterSelector)s} == 1
      ||| % c,
      'An etcd member applies raft entries far behind the cluster.',
      'Member %s of cluster %s is {{ $value }} raft entries behind the highest committed index of the cluster (threshold %s; etcd rejects requests at 5000).' % [member, cluster, c.applyLagThreshold],
    ),
    alert(
      'EtcdFrequentLeaderChanges', 'warning', c.leaderChangesFor,
      |||
        (
          max by (%(cl)s) (
            max_over_time(etcd_monitor_member_raft_term{%(exporterSelector)s}[%(leaderChangesWindow)s])
            - min_over_time(etcd_monitor_member_raft_term{%(exporterSelector)s}[%(leaderChangesWindow)s])
          )
          - on (%(cl)s)
          sum by (%(cl)s) (ceil(changes(etcd_monitor_member_up{%(exporterSelector)s}[%(leaderChangesWindow)s]) / 2))
        ) > %(leaderChangesThreshold)s
      ||| % v,
      'etcd keeps electing leaders.',
      'Cluster %s held {{ $value }} more elections than member restarts in the last %s: check disk and network latency of the members.' % [cluster, c.leaderChangesWindow],
    ),
  ],

  local alarmAlerts = [
    alert(
      'EtcdNoSpaceAlarm', 'critical', c.noSpaceAlarmFor,
      'etcd_monitor_member_alarm{%(exporterSelector)s, alarm="NOSPACE"} == 1' % c,
      'etcd raised the NOSPACE alarm: the cluster is read-only.',
      'The NOSPACE alarm is raised for member %s of cluster %s: the database reached its quota and the cluster accepts only reads and deletes until the alarm is disarmed.' % [member, cluster],
    ),
    alert(
      'EtcdCorruptAlarm', 'critical', c.corruptAlarmFor,
      'etcd_monitor_member_alarm{%(exporterSelector)s, alarm="CORRUPT"} == 1' % c,
      'etcd raised the CORRUPT alarm.',
      'The CORRUPT alarm is raised for member %s of cluster %s: its data differs from its peers; the cluster refuses writes.' % [member, cluster],
    ),
  ] + [
    alert(
      'EtcdDatabaseQuotaUsageHigh', t.severity, c.dbQuotaFor,
      'cluster_member:etcd_monitor_db_quota_usage:ratio{%s} > %s' % [c.exporterSelector, util.num(t.ratio)],
      'An etcd database is filling its quota.',
      'The database of member %s of cluster %s uses {{ $value | humanizePercentage }} of its quota (threshold %d%%); at 100%% etcd raises NOSPACE and refuses writes.' % [member, cluster, std.round(t.ratio * 100)],
    )
    for t in [
      { severity: 'info', ratio: c.dbQuotaInfoRatio },
      { severity: 'warning', ratio: c.dbQuotaWarningRatio },
      { severity: 'critical', ratio: c.dbQuotaCriticalRatio },
    ]
  ] + [
    alert(
      'EtcdDatabaseGrowingFast', 'warning', c.dbGrowthFor,
      |||
        (
          predict_linear(etcd_monitor_member_db_size_bytes{%(exporterSelector)s}[%(dbGrowthWindow)s], %(dbGrowthHorizonSeconds)d)
          > cluster_member:etcd_monitor_db_quota:bytes{%(exporterSelector)s}
        )
        and
        (delta(etcd_monitor_member_db_size_bytes{%(exporterSelector)s}[%(dbGrowthWindow)s]) > %(dbGrowthMinBytes)d)
      ||| % c,
      'An etcd database is predicted to reach its quota soon.',
      'At the growth of the last %s, the database of member %s of cluster %s reaches its quota within %s.' % [c.dbGrowthWindow, member, cluster, util.humanSeconds(c.dbGrowthHorizonSeconds)],
    ),
    alert(
      'EtcdDatabaseHighFragmentation', 'warning', c.fragmentationFor,
      |||
        cluster_member:etcd_monitor_db_fragmentation:ratio{%(exporterSelector)s} > %(fragmentationRatio)s
        and cluster_member:etcd_monitor_db_fragmentation:bytes{%(exporterSelector)s} > %(fragmentationMinBytes)d
      ||| % c,
      'An etcd database is heavily fragmented.',
      '{{ $value | humanizePercentage }} of the database file of member %s of cluster %s is free space that defragmentation would reclaim (more than %s).' % [member, cluster, util.humanBytes(c.fragmentationMinBytes)],
    ),
  ],

  local latencyAlerts = [
    alert(
      'EtcdProbeLatencyHigh', 'warning', c.probeLatencyFor,
      'cluster_member_probe:etcd_monitor_probe_duration_seconds:quantile_over_time{%s, quantile="0.95"} > %s' % [c.exporterSelector, util.num(c.probeLatencyThresholdSeconds)],
      'Reads from an etcd member are slow.',
      'The p95 over %s of the {{ $labels.probe }} probe against member %s of cluster %s is {{ $value | humanizeDuration }} (threshold %s).' % [c.probeWindow, member, cluster, util.ms(c.probeLatencyThresholdSeconds)],
    ),
    alert(
      'EtcdMixedVersions', 'warning', c.mixedVersionsFor,
      'count by (%(cl)s) (count by (%(cl)s, version) (etcd_monitor_member_version_info{%(exporterSelector)s})) > 1' % v,
      'etcd members run different versions.',
      'Cluster %s has run {{ $value }} different etcd versions for %s: finish or roll back the upgrade.' % [cluster, c.mixedVersionsFor],
    ),
  ],

  // etcd's own /metrics, scraped from each member; corrected versions of etcd-io/etcd contrib/mixin.
  local etcdBy(extra) = util.by([c.clusterLabel, 'job', 'instance'] + extra),
  // Only the codes of a server that failed (grpcFailedCodes), and only for a method called at least
  // grpcFailedMinRequestRate times a second: a few failures of a rarely called method are noise.
  local grpcFailedExpr = |||
    100 * (
      sum by (%(by)s) (
        rate(grpc_server_handled_total{%(etcdSelector)s, grpc_code=~"%(grpcFailedCodes)s"}[%(rateWindow)s])
        unless
        rate(grpc_server_handled_total{%(etcdSelector)s, grpc_method="Watch", grpc_code=~"Unavailable|Canceled"}[%(rateWindow)s])
      )
      /
      (sum by (%(by)s) (rate(grpc_server_handled_total{%(etcdSelector)s}[%(rateWindow)s])) >= %(grpcFailedMinRequestRate)s)
    )
  ||| % (c { by: etcdBy(['grpc_service', 'grpc_method']), grpcFailedCodes: std.join('|', c.grpcFailedCodes) }),
  local etcdAlerts = [
    alert(
      'EtcdHighNumberOfFailedProposals', 'warning', c.failedProposalsFor,
      'increase(etcd_server_proposals_failed_total{%(etcdSelector)s}[%(failedProposalsWindow)s]) > %(failedProposalsThreshold)s' % c,
      'An etcd member sees failed raft proposals.',
      'Member %s of cluster %s saw {{ $value | humanize }} failed raft proposals in the last %s (threshold %s); they come with leader elections and lost quorum.' % [instance, cluster, c.failedProposalsWindow, c.failedProposalsThreshold],
    ),
  ] + [
    alert(
      'EtcdHighFsyncDurations', t.severity, c.diskLatencyFor,
      'cluster_instance:etcd_disk_wal_fsync_duration_seconds:histogram_quantile{%s, quantile="0.99"} > %s' % [c.etcdSelector, util.num(t.threshold)],
      'etcd WAL fsyncs are slow.',
      'The p99 WAL fsync of member %s of cluster %s is {{ $value | humanizeDuration }} (threshold %s; etcd needs under 10ms): the disk is too slow for etcd.' % [instance, cluster, util.ms(t.threshold)],
    )
    for t in [
      { severity: 'warning', threshold: c.walFsyncWarningSeconds },
      { severity: 'critical', threshold: c.walFsyncCriticalSeconds },
    ]
  ] + [
    alert(
      'EtcdHighCommitDurations', t.severity, c.diskLatencyFor,
      'cluster_instance:etcd_disk_backend_commit_duration_seconds:histogram_quantile{%s, quantile="0.99"} > %s' % [c.etcdSelector, util.num(t.threshold)],
      'etcd backend commits are slow.',
      'The p99 backend commit of member %s of cluster %s is {{ $value | humanizeDuration }} (threshold %s; etcd needs under 25ms): the disk is too slow for etcd.' % [instance, cluster, util.ms(t.threshold)],
    )
    for t in [
      { severity: 'warning', threshold: c.backendCommitWarningSeconds },
      { severity: 'critical', threshold: c.backendCommitCriticalSeconds },
    ]
  ] + [
    alert(
      'EtcdPeerRoundTripHigh', 'warning', c.peerRTTFor,
      'cluster_instance:etcd_network_peer_round_trip_time_seconds:histogram_quantile{%s, quantile="0.99"} > %s' % [c.etcdSelector, util.num(c.peerRTTWarningSeconds)],
      'etcd peers are slow to reach.',
      'The p99 round trip from member %s to peer {{ $labels.To }} of cluster %s is {{ $value | humanizeDuration }} (threshold %s): the election timeout should be at least ten times the round trip.' % [instance, cluster, util.ms(c.peerRTTWarningSeconds)],
    ),
  ] + [
    alert(
      'EtcdHighNumberOfFailedGRPCRequests', t.severity, t['for'],
      '%s > %s' % [std.rstripChars(grpcFailedExpr, '\n'), t.percent],
      'etcd fails gRPC requests.',
      '{{ $value | humanize }}%% of {{ $labels.grpc_service }}/{{ $labels.grpc_method }} requests to member %s of cluster %s failed over the last %s (threshold %s%%; watch streams ending with Unavailable or Canceled are not failures).' % [instance, cluster, c.rateWindow, t.percent],
    )
    for t in [
      { severity: 'warning', percent: c.grpcFailedWarningPercent, 'for': c.grpcFailedFor },
      { severity: 'critical', percent: c.grpcFailedCriticalPercent, 'for': c.grpcFailedCriticalFor },
    ]
  ] + [
    alert(
      'EtcdGRPCRequestsSlow', 'warning', c.grpcSlowFor,
      // grpc_server_handling_seconds exists only with etcd's --metrics=extensive; the and-clause
      // makes that dependency explicit (no histogram, no result), see docs/runbooks.md.
      |||
        histogram_quantile(0.99, sum by (%(by)s) (rate(grpc_server_handling_seconds_bucket{%(etcdSelector)s, grpc_type="unary", grpc_method!="Defragment"}[%(rateWindow)s])))
        > %(threshold)s
        and on (%(on)s) (count by (%(on)s) (grpc_server_handling_seconds_bucket{%(etcdSelector)s}) > 0)
      ||| % (c { by: etcdBy(['grpc_service', 'grpc_method', 'le']), on: etcdBy([]), threshold: util.num(c.grpcSlowThresholdSeconds) }),
      'etcd serves gRPC requests slowly.',
      'The p99 of {{ $labels.grpc_service }}/{{ $labels.grpc_method }} requests on member %s of cluster %s is {{ $value | humanizeDuration }} (threshold %s).' % [instance, cluster, util.ms(c.grpcSlowThresholdSeconds)],
    ),
  ],

  // Certificates, as of the exporter's last check (etcd_monitor_certificate_check_timestamp_seconds):
  // the chains members serve (etcd_monitor_certificate_*) and the exporter's own files
  // (etcd_monitor_certificate_file_*). Expiry is judged on the chain's earliest-expiring certificate
  // against its own lifetime, so 1-year kubeadm, 90-day cert-manager and short-lived certificates
  // are all warned about in proportion.
  local certFamilies = ['etcd_monitor_certificate', 'etcd_monitor_certificate_file'],
  local certWhere = '{{ if $labels.file }}The exporter\'s {{ $labels.file }} file {{ $labels.path }} for cluster %s holds{{ else }}The {{ $labels.listener }} listener of member %s of cluster %s serves{{ end }} a certificate (CN {{ $labels.subject_cn }}, serial {{ $labels.serial }}, issued by {{ $labels.issuer_cn }})' % [cluster, member, cluster],
  local certSeries(family, m) = '%s_%s_timestamp_seconds{%s, certificate="earliest"}' % [family, m, c.exporterSelector],
  local certExpiring(ratio, days) = std.join('\nor\n', [
    std.rstripChars(|||
      (
        %(after)s - time()
          < clamp_max(%(ratio)s * (%(after)s - %(before)s), %(limit)d)
      )
      and (%(after)s - time() > 0)
    ||| % { after: certSeries(f, 'not_after'), before: certSeries(f, 'not_before'), ratio: util.num(ratio), limit: days * 86400 }, '\n')
    for f in certFamilies
  ]),
  local certificateAlerts = [
    alert(
      'EtcdCertificateExpiringSoon', t.severity, c.certificateExpiringFor,
      certExpiring(t.ratio, t.days),
      'An etcd certificate expires soon.',
      '%s that expires in {{ $value | humanizeDuration }}.' % certWhere,
    )
    for t in [
      { severity: 'warning', ratio: c.certificateWarningLifetimeRatio, days: c.certificateWarningDays },
      { severity: 'critical', ratio: c.certificateCriticalLifetimeRatio, days: c.certificateCriticalDays },
    ]
  ] + [
    alert(
      'EtcdCertificateExpired', 'critical', '0m',
      std.join('\nor\n', ['time() - %s >= 0' % certSeries(f, 'not_after') for f in certFamilies]),
      'An etcd certificate has expired.',
      '%s that expired {{ $value | humanizeDuration }} ago: TLS connections that verify it fail.' % certWhere,
    ),
    alert(
      'EtcdCertificateNotVerified', 'warning', c.certificateNotVerifiedFor,
      |||
        etcd_monitor_certificate_chain_verified{%(exporterSelector)s} == 0
        or etcd_monitor_certificate_file_verified{%(exporterSelector)s} == 0
      ||| % c,
      'An etcd certificate chain does not verify.',
      '{{ if $labels.file }}The exporter\'s client certificate {{ $labels.path }} for cluster %s does not verify against its CA file{{ else }}The chain the {{ $labels.listener }} listener of member %s of cluster %s serves does not verify against the configured CA for the name etcd-monitor dials{{ end }}: clients that check it refuse the connection.' % [cluster, member, cluster],
    ),
    // A member that is down fails the handshake too; EtcdMemberDown says so already.
    alert(
      'EtcdCertificateCheckFailing', 'warning', c.certificateCheckFailingFor,
      |||
        (etcd_monitor_certificate_check_success{%(exporterSelector)s} == 0 unless on (%(cl)s, member_id) etcd_monitor_member_up{%(exporterSelector)s} == 0)
        or etcd_monitor_certificate_file_check_success{%(exporterSelector)s} == 0
        or (time() - etcd_monitor_certificate_check_timestamp_seconds{%(exporterSelector)s} > %(certificateCheckStaleSeconds)d)
      ||| % v,
      'etcd-monitor cannot check a certificate.',
      '{{ if $labels.file }}etcd-monitor cannot read its TLS file {{ $labels.path }} for cluster %s{{ else if $labels.listener }}etcd-monitor cannot read the certificate the {{ $labels.listener }} listener of member %s of cluster %s serves{{ else }}The last certificate check of cluster %s is {{ $value | humanizeDuration }} old{{ end }}: its expiry is unknown.' % [cluster, member, cluster, cluster],
    ),
  ],

  prometheusAlerts+:: {
    groups+: [
      { name: 'etcd-monitor-exporter', rules: exporterAlerts },
      { name: 'etcd-monitor-cluster', rules: clusterAlerts },
      { name: 'etcd-monitor-database', rules: alarmAlerts },
      { name: 'etcd-monitor-latency', rules: latencyAlerts },
      { name: 'etcd', rules: etcdAlerts },
      { name: 'etcd-monitor-certificates', rules: certificateAlerts },
    ],
  },
} + (import 'alerts_consistency.libsonnet')
