package snapshot

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

var alarmName = regexp.MustCompile(`^[A-Z_]+$`)

// FuzzParseAlarms: parseAlarms never panics on what a member puts in StatusResponse.errors; every
// alarm it returns renders and parses back to itself; and an alarm as etcd renders it
// (pb.AlarmMember's text form, what the server appends to errors) keeps its member ID and type,
// wherever it sits in the entry.
func FuzzParseAlarms(f *testing.F) {
	f.Add("memberID:10276657743932975437 alarm:NOSPACE ", uint64(10276657743932975437), int32(pb.AlarmType_NOSPACE), "")
	f.Add("etcdserver: no leader", uint64(1), int32(pb.AlarmType_CORRUPT), "etcdserver: ")
	f.Add("memberID:99999999999999999999 alarm:NOSPACE", uint64(0), int32(pb.AlarmType_NONE), "x")
	f.Add("memberID:1\talarm:CORRUPT memberID:2 alarm:NOSPACE", ^uint64(0), int32(7), "memberID:")
	f.Add("alarm:NOSPACE memberID:", uint64(18446744073709551615), int32(pb.AlarmType_CORRUPT), "\xff")
	f.Fuzz(func(t *testing.T, entry string, id uint64, kind int32, prefix string) {
		for _, a := range parseAlarms([]string{entry, prefix + entry}) {
			if !alarmName.MatchString(a.Alarm) {
				t.Errorf("parseAlarms(%q) gave alarm name %q", entry, a.Alarm)
			}
			again := parseAlarms([]string{fmt.Sprintf("memberID:%d alarm:%s", a.MemberID, a.Alarm)})
			if len(again) != 1 || again[0] != a {
				t.Errorf("alarm %+v from %q does not round-trip: %+v", a, entry, again)
			}
		}

		am := &pb.AlarmMember{MemberID: id, Alarm: pb.AlarmType(kind)}
		rendered := am.String()
		name, known := pb.AlarmType_name[kind]
		if strings.Contains(prefix, "memberID:") {
			prefix = "" // an earlier alarm-like text in the same entry is another case
		}
		got := parseAlarms([]string{prefix + rendered})
		switch {
		// The text form leaves out zero fields: NONE is no alarm, and member ID 0 (which raft
		// never assigns) would be rendered without its ID.
		case known && kind != int32(pb.AlarmType_NONE) && id != 0:
			want := MemberAlarm{MemberID: id, Alarm: name}
			if len(got) != 1 || got[0] != want {
				t.Errorf("parseAlarms(%q) = %+v, want %+v", prefix+rendered, got, want)
			}
		case len(got) != 0 && got[0].MemberID != id:
			t.Errorf("parseAlarms(%q) = %+v: a different member ID", prefix+rendered, got)
		}
	})
}
