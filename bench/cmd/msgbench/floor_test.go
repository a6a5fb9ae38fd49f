package main

import (
	"slices"
	"testing"
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
