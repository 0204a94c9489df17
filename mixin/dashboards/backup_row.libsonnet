// The overview's "Backups and defragmentation" row: how fresh the newest backup is (pushed by
// `etcd-monitor snapshot save`, and the newest file the backup collector sees), the last
// verification result, and what defragmentation would reclaim per member. A function of the
// mixin's _config, appended after the overview's other rows.
local g = import '../lib/dashboard.libsonnet';
function(c)
  local cl = c.clusterLabel;
  local e = '%s, %s="$cluster"' % [c.exporterSelector, cl];
  local b = '%s, %s="$cluster"' % [c.backupSelector, cl];
  local t = g.target;
  local maxAge = c.backupMaxAgeSeconds + c.backupAgeSlackSeconds;
  local ageThresholds = [{ color: 'green', value: null }, { color: 'orange', value: c.backupMaxAgeSeconds }, { color: 'red', value: maxAge }];
  local pushedAge = 'time() - max(etcd_backup_last_success_timestamp_seconds{%s})' % b;
  local fileAge = 'time() - max by (dir) (etcd_monitor_backup_newest_file_timestamp_seconds{%s})' % e;
  [
    g.row('Backups and defragmentation'),
    g.stat('Last backup', 'Age of the last snapshot `etcd-monitor snapshot save` saved and pushed (etcd_backup_last_success_timestamp_seconds); red past the EtcdBackupTooOld threshold.',
           [t(pushedAge, instant=true)], unit='s', thresholds=ageThresholds, colorMode='background'),
    g.stat('Newest backup file', 'Age of the newest snapshot file in each --backup.dir the backup collector watches, whichever tool wrote it.',
           [t(fileAge, '{{dir}}', instant=true)], unit='s', thresholds=ageThresholds, colorMode='background'),
    // One number per verdict class, so that the colour follows it: the pushed result series are
    // 1 for the result that holds and 0 for the others.
    g.stat('Last verification', 'Verdict on the last snapshot `snapshot save` checked: verified (equals the members\' HashKV), unverified (compacted or unverifiable: kept, not proved), or mismatch / corrupt (discarded).',
           [t(|||
             (max(etcd_backup_verification{%(b)s, result="verified"}) == 1) * 1
             or (max(etcd_backup_verification{%(b)s, result=~"compacted|unverifiable"}) == 1) * 2
             or (max(etcd_backup_verification{%(b)s, result=~"mismatch|corrupt"}) == 1) * 3
           ||| % { b: b }, instant=true)],
           mappings=[{
             type: 'value',
             options: {
               '1': { text: 'verified', color: 'green', index: 0 },
               '2': { text: 'unverified', color: 'orange', index: 1 },
               '3': { text: 'mismatch or corrupt', color: 'red', index: 2 },
             },
           }], colorMode='background'),
    g.stat('Defragmentation would reclaim', 'Free space in each member\'s database file (db size - db size in use): what `etcd-monitor defrag` or `etcdctl defrag` would give back.',
           [t('max by (member) (cluster_member:etcd_monitor_db_fragmentation:bytes{%s})' % e, '{{member}}', instant=true)],
           unit='bytes', w=12,
           thresholds=[{ color: 'green', value: null }, { color: 'orange', value: c.fragmentationMinBytes }]),
    g.timeseries('Backup age', 'Age of the last pushed snapshot and of the newest file per --backup.dir; the EtcdBackupTooOld threshold is drawn.',
                 [t(pushedAge, 'snapshot save'), t(fileAge, '{{dir}}')], unit='s', min=0,
                 thresholds=[{ color: 'transparent', value: null }, { color: 'red', value: maxAge }]),
    g.timeseries('Reclaimable by defragmentation', 'db size - db size in use per member over time; the EtcdDatabaseHighFragmentation floor is drawn.',
                 [t('max by (member) (cluster_member:etcd_monitor_db_fragmentation:bytes{%s})' % e, '{{member}}')], unit='bytes', min=0,
                 thresholds=[{ color: 'transparent', value: null }, { color: 'orange', value: c.fragmentationMinBytes }]),
  ]
