package mixin

// The backup alerts (issue "Backup and defrag", mixin/alerts_backup.libsonnet) join the expected
// list here rather than in expectedAlerts' literal, so that groups added side by side merge cleanly.
func init() {
	expectedAlerts = append(expectedAlerts,
		"EtcdBackupTooOld", "EtcdBackupFailing", "EtcdBackupUnverified", "EtcdBackupMismatch",
		"EtcdBackupFileTooOld", "EtcdBackupNoFiles", "EtcdBackupMissing",
	)
}
