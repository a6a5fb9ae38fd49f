package main

import (
	"slices"
	"testing"
	"time"
)

// The floors run msg-direct's own rates, then above the highest: neither
// side's knee is looked for on a finer grid than the other's.
func TestFloorRates(t *testing.T) {
	for _, tc := range []struct {
		direct, want []float64
	}{
		{[]float64{1000, 2000, 5000}, []float64{1000, 2000, 5000, 6250, 7500, 10000}},
		{[]float64{5000, 1000, 5000}, []float64{1000, 5000, 6250, 7500, 10000}},
		{[]float64{1001}, []float64{1001, 1251, 1502, 2002}},
		{nil, nil},
	} {
		if got := floorRates(tc.direct); !slices.Equal(got, tc.want) {
			t.Errorf("floorRates(%v) = %v, want %v", tc.direct, got, tc.want)
		}
	}
}

// The floors remember message ids as long as Parley's messaging does: its
// default, or what -server-env sets.
func TestFloorDedupWindow(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want time.Duration
	}{
		{nil, 10 * time.Minute},
		{[]string{"GOGC=200"}, 10 * time.Minute},
		{[]string{"PARLEY_MSG_DEDUP_WINDOW=2m"}, 2 * time.Minute},
		{[]string{"PARLEY_MSG_DEDUP_WINDOW=1h", "GOGC=200"}, time.Hour},
		{[]string{"PARLEY_MSG_DEDUP_WINDOW=soon"}, 10 * time.Minute}, // messaging refuses it too
	} {
		if got := floorDedupWindow(tc.env); got != tc.want {
			t.Errorf("floorDedupWindow(%q) = %v, want %v", tc.env, got, tc.want)
		}
	}
}
