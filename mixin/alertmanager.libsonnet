// An example Alertmanager configuration (alerts/alertmanager.yml) for the alerts of this mixin.
// Secrets are only ever read from files (*_file fields of Alertmanager v0.28).
{
  local c = $._config,
  local am = c.alertmanager,
  local cl = c.clusterLabel,

  // Alerts that a member-level problem produces; a cluster-wide failure explains them.
  local memberLevel = [
    'EtcdMemberDown',
    'EtcdQuorumAtRisk',
    'EtcdMemberPartitioned',
    'EtcdMemberApplyLagging',
    'EtcdProbeLatencyHigh',
    'EtcdFrequentLeaderChanges',
    'EtcdHighNumberOfFailedProposals',
    'EtcdHighNumberOfFailedGRPCRequests',
  ],
  local regex(names) = std.join('|', names),

  alertmanagerConfig:: {
    route: {
      receiver: 'email-and-webhook',
      group_by: [cl, 'alertname'],
      group_wait: am.groupWait,
      group_interval: am.groupInterval,
      repeat_interval: am.repeatInterval,
      routes: [
        // Everything goes to e-mail and the webhook; continue so severity routes also match.
        { receiver: 'email-and-webhook', 'continue': true },
        { receiver: 'pagerduty', matchers: ['severity="critical"'] },
        { receiver: 'slack', matchers: ['severity="warning"'] },
      ],
    },
    inhibit_rules: [
      {
        // Nothing answers: every finding about the cluster's members follows from that. Not the
        // certificate expiry alerts: an expired certificate is one reason nobody answers.
        source_matchers: ['alertname="EtcdUnreachable"'],
        target_matchers: ['alertname=~"%s"' % regex(['EtcdMonitorCollectorFailing', 'EtcdQuorumLost', 'EtcdNoLeader', 'EtcdCertificateCheckFailing'] + memberLevel)],
        equal: [cl],
      },
      {
        // Quorum lost: members cannot elect a leader, proposals fail, reads time out.
        source_matchers: ['alertname="EtcdQuorumLost"'],
        target_matchers: ['alertname=~"%s"' % regex(['EtcdNoLeader'] + memberLevel)],
        equal: [cl],
      },
      {
        source_matchers: ['alertname="EtcdNoLeader"'],
        target_matchers: ['alertname=~"%s"' % regex(memberLevel)],
        equal: [cl],
      },
      {
        // Tiered alerts (quota, disk latency, gRPC errors): only the highest tier notifies.
        source_matchers: ['severity="critical"'],
        target_matchers: ['severity=~"warning|info"'],
        equal: ['alertname', cl, 'instance', 'member_id', 'To', 'grpc_method', 'listener', 'file'],
      },
      {
        source_matchers: ['severity="warning"'],
        target_matchers: ['severity="info"'],
        equal: ['alertname', cl, 'instance', 'member_id'],
      },
    ],
    receivers: [
      {
        name: 'email-and-webhook',
        email_configs: [{
          to: am.emailTo,
          from: am.emailFrom,
          smarthost: am.smtpSmarthost,
          auth_username: am.smtpAuthUsername,
          auth_password_file: am.smtpAuthPasswordFile,
          require_tls: true,
          send_resolved: true,
        }],
        webhook_configs: [{
          url_file: am.webhookURLFile,
          send_resolved: true,
        }],
      },
      {
        name: 'pagerduty',
        pagerduty_configs: [{
          routing_key_file: am.pagerdutyRoutingKeyFile,
          severity: 'critical',
          description: '{{ .CommonLabels.alertname }} on etcd cluster {{ .CommonLabels.%s }}: {{ .CommonAnnotations.summary }}' % cl,
          send_resolved: true,
        }],
      },
      {
        name: 'slack',
        slack_configs: [{
          api_url_file: am.slackAPIURLFile,
          channel: am.slackChannel,
          title: '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} on etcd cluster {{ .CommonLabels.%s }}' % cl,
          text: '{{ range .Alerts }}{{ .Annotations.description }} <{{ .Annotations.runbook_url }}|runbook>\n{{ end }}',
          send_resolved: true,
        }],
      },
    ],
  },
}
