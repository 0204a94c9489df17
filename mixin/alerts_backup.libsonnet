// Backup alerts, in a group of their own. Two sources, chosen by the user:
//  - `etcd-monitor snapshot save --pushgateway.url` pushes etcd_backup_* (job etcd_backup, grouped
//    by cluster; docs/backup.md), aggregated here by cluster;
//  - the exporter's backup collector (--collector.backup) reports etcd_monitor_backup_* for each
//    --backup.dir, whatever tool wrote the files.
// A cluster may use either or both; EtcdBackupMissing fires only when it has neither.
local util = import 'lib/util.libsonnet';
{
  local c = $._config,
  local v = c { cl: c.clusterLabel, maxAge: c.backupMaxAgeSeconds + c.backupAgeSlackSeconds },
  local cluster = '{{ $labels.%s }}' % c.clusterLabel,
  local maxAge = util.humanSeconds(c.backupMaxAgeSeconds + c.backupAgeSlackSeconds),

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

  local backupAlerts = [
    alert(
      'EtcdBackupTooOld', 'critical', c.backupTooOldFor,
      'time() - max by (%(cl)s) (etcd_backup_last_success_timestamp_seconds{%(backupSelector)s}) > %(maxAge)d' % v,
      'The last successful etcd backup is too old.',
      'The last snapshot of cluster %s that `etcd-monitor snapshot save` saved and pushed was taken {{ $value | humanizeDuration }} ago (threshold %s): a restore would lose everything written since.' % [cluster, maxAge],
    ),
    // A failure newer than the last success, or failures and no success at all.
    alert(
      'EtcdBackupFailing', 'warning', c.backupFailingFor,
      |||
        max by (%(cl)s) (etcd_backup_last_failure_timestamp_seconds{%(backupSelector)s})
        > max by (%(cl)s) (etcd_backup_last_success_timestamp_seconds{%(backupSelector)s})
        or
        max by (%(cl)s) (etcd_backup_last_failure_timestamp_seconds{%(backupSelector)s})
        unless on (%(cl)s) max by (%(cl)s) (etcd_backup_last_success_timestamp_seconds{%(backupSelector)s})
      ||| % v,
      'etcd backups are failing.',
      'The last `etcd-monitor snapshot save` of cluster %s failed (at {{ $value | humanizeTimestamp }}) and no save has succeeded since.' % [cluster],
    ),
    // Kept, but not proved equal to the cluster: compacted before the comparison, or no member answered.
    alert(
      'EtcdBackupUnverified', 'warning', c.backupUnverifiedFor,
      'max by (%(cl)s, result) (etcd_backup_verification{%(backupSelector)s, result=~"compacted|unverifiable"}) == 1' % v,
      'The last etcd backup could not be verified.',
      'The last snapshot of cluster %s checked by `etcd-monitor snapshot save` is {{ $labels.result }}: it was kept, but not proved to equal the cluster.' % [cluster],
    ),
    // Not kept: the file differs from what the members hold, or is damaged.
    alert(
      'EtcdBackupMismatch', 'critical', c.backupMismatchFor,
      'max by (%(cl)s, result) (etcd_backup_verification{%(backupSelector)s, result=~"mismatch|corrupt"}) == 1' % v,
      'An etcd snapshot differs from the cluster or is corrupt.',
      'The last snapshot of cluster %s checked by `etcd-monitor snapshot save` is {{ $labels.result }} and was discarded: the members\' data may differ, or the member streamed a damaged database.' % [cluster],
    ),
    alert(
      'EtcdBackupFileTooOld', 'critical', c.backupTooOldFor,
      'time() - etcd_monitor_backup_newest_file_timestamp_seconds{%(exporterSelector)s} > %(maxAge)d' % v,
      'The newest etcd snapshot file is too old.',
      'The newest snapshot file in {{ $labels.dir }} (watched by etcd-monitor {{ $labels.instance }}) of cluster %s was written {{ $value | humanizeDuration }} ago (threshold %s).' % [cluster, maxAge],
    ),
    alert(
      'EtcdBackupNoFiles', 'critical', c.backupNoFilesFor,
      'etcd_monitor_backup_files{%(exporterSelector)s} == 0' % v,
      'No etcd snapshot file where backups should be.',
      'etcd-monitor {{ $labels.instance }} finds no snapshot file in {{ $labels.dir }} for cluster %s.' % [cluster],
    ),
    // Neither source reports anything for a cluster the exporter watches.
    alert(
      'EtcdBackupMissing', 'warning', c.backupMissingFor,
      |||
        max by (%(cl)s) (etcd_monitor_up{%(backupExpectedSelector)s})
        unless on (%(cl)s) max by (%(cl)s) (etcd_backup_duration_seconds{%(backupSelector)s})
        unless on (%(cl)s) max by (%(cl)s) (etcd_monitor_backup_files{%(exporterSelector)s})
      ||| % v,
      'Nothing reports backups of an etcd cluster.',
      'Cluster %s is monitored, but no backup series exist for it: neither `etcd-monitor snapshot save` pushes (etcd_backup_*) nor the exporter\'s backup collector (etcd_monitor_backup_*).' % [cluster],
    ),
  ],

  prometheusAlerts+:: {
    groups+: [
      { name: 'etcd-monitor-backup', rules: backupAlerts },
    ],
  },
}
