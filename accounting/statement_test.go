package accounting

import (
	"reflect"
	"testing"
	"time"
)

func TestStatement(t *testing.T) {
	day := func(d, h int) time.Time { return time.Date(2025, 3, d, h, 0, 0, 0, time.UTC) }
	rec := func(seq uint64, user, account, cur string, end time.Time, charge int64, node string) UsageRecord {
		return UsageRecord{
			Seq: seq, User: user, Account: account, Currency: cur, EndTime: end,
			CPUMillis: uint64(charge) * 10, GPUSeconds: 1, Charge: charge,
			NodeOperatorPay: map[string]int64{node: charge / 2}, ClusterOperator: "cl", ClusterOperatorPay: charge - charge/2,
		}
	}
	// 2025-03-14 is a Friday: its ISO week starts on the 10th.
	recs := []UsageRecord{
		rec(1, "ada", "physics", "EUR", day(14, 1), 100, "op:a"),
		rec(2, "ada", "physics", "EUR", day(14, 23), 50, "op:b"),
		rec(3, "bob", "physics", "EUR", day(16, 12), 10, "op:a"),
		rec(4, "bob", "chem", "EUR", day(17, 0), 7, "op:a"),
		rec(5, "ada", "physics", "USD", day(17, 5), 3, "op:b"),
		rec(6, "ada", "physics", "EUR", day(31, 5), 1000, "op:a"),
		{Seq: 7, User: "cy", Account: "chem", Currency: "EUR", StartTime: time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC), Charge: 1,
			ClusterOperator: "cl", ClusterOperatorPay: 1},
	}
	line := func(start, end time.Time, account, ben, cur string, n uint64, charge, earned int64) StatementLine {
		return StatementLine{Start: start, End: end, Account: account, Beneficiary: ben, Currency: cur,
			Records: n, CPUMillis: uint64(charge) * 10, GPUSeconds: n, Charge: charge, Earned: earned}
	}
	mar := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	apr := time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)
	may := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		f      StatementFilter
		period Period
		want   []StatementLine
	}{
		{"day, one account and user", StatementFilter{Account: "physics", User: "ada"}, PeriodDay, []StatementLine{
			line(day(14, 0), day(15, 0), "physics", "", "EUR", 2, 150, 0),
			line(day(17, 0), day(18, 0), "physics", "", "USD", 1, 3, 0),
			line(day(31, 0), apr, "physics", "", "EUR", 1, 1000, 0),
		}},
		{"week, all", StatementFilter{}, PeriodWeek, []StatementLine{
			line(day(10, 0), day(17, 0), "physics", "", "EUR", 3, 160, 0),
			line(day(17, 0), day(24, 0), "chem", "", "EUR", 1, 7, 0),
			line(day(17, 0), day(24, 0), "physics", "", "USD", 1, 3, 0),
			// No end time: the start time counts.
			{Start: day(31, 0), End: apr.AddDate(0, 0, 6), Account: "chem", Currency: "EUR", Records: 1, Charge: 1},
			line(day(31, 0), apr.AddDate(0, 0, 6), "physics", "", "EUR", 1, 1000, 0),
		}},
		{"month, from and to", StatementFilter{From: day(14, 23), To: day(31, 5)}, PeriodMonth, []StatementLine{
			line(mar, apr, "chem", "", "EUR", 1, 7, 0),
			line(mar, apr, "physics", "", "EUR", 2, 60, 0),
			line(mar, apr, "physics", "", "USD", 1, 3, 0),
		}},
		{"all, beneficiary earnings", StatementFilter{Beneficiary: "op:a"}, PeriodAll, []StatementLine{
			line(time.Time{}, time.Time{}, "", "op:a", "EUR", 4, 1117, 50+5+3+500),
		}},
		{"month, cluster operator", StatementFilter{Beneficiary: "cl", User: "cy"}, PeriodMonth, []StatementLine{
			{Start: apr, End: may, Beneficiary: "cl", Currency: "EUR", Records: 1, Charge: 1, Earned: 1},
		}},
		{"nothing selected", StatementFilter{User: "nobody"}, PeriodAll, []StatementLine{}},
	} {
		got, err := Statement(recs, tc.f, tc.period)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
	if _, err := Statement(recs, StatementFilter{}, "year"); err == nil || err.Error() != `period: "year" is not day, week, month or all` {
		t.Errorf("bad period: %v", err)
	}
}
