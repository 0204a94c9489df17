{
  // A label list for by()/on(), without duplicates (clusterLabel may be 'job'), order kept.
  by(labels):: std.join(', ', std.foldl(function(acc, l) if std.member(acc, l) then acc else acc + [l], labels, [])),
  // GitHub's anchor for a markdown heading made of an alert name.
  anchor(name):: std.asciiLower(name),
  // Short decimal forms of thresholds (jsonnet prints 0.1 as 0.10000000000000001).
  num(x):: '%g' % x,
  ms(seconds):: '%gms' % (seconds * 1000),
  humanSeconds(s)::
    if s % 86400 == 0 then '%dd' % (s / 86400)
    else if s % 3600 == 0 then '%dh' % (s / 3600)
    else if s % 60 == 0 then '%dm' % (s / 60)
    else '%ds' % s,
  humanBytes(b)::
    if b % (1024 * 1024 * 1024) == 0 then '%d GiB' % (b / (1024 * 1024 * 1024))
    else if b % (1024 * 1024) == 0 then '%d MiB' % (b / (1024 * 1024))
    else '%d bytes' % b,
}
