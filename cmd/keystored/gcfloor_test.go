package main

import "testing"

func TestGCPercent(t *testing.T) {
	const floor = 32 << 20
	for _, tt := range []struct {
		live uint64
		want int
	}{
		{0, maxGCPercent},
		{1, maxGCPercent},
		{320 << 10, maxGCPercent},
		{1 << 20, 3100},  // goal 1 MiB × 32 = the floor
		{8 << 20, 300},   // goal 8 MiB × 4
		{15 << 20, 113},  // just below half the floor
		{16 << 20, 100},  // half the floor: the default
		{1 << 30, 100},   // a large daemon: the default
		{floor - 1, 100}, // never below the default
		{floor / 3, 200}, // goal floor / 3 × 3
	} {
		if got := gcPercent(tt.live, floor); got != tt.want {
			t.Errorf("gcPercent(%d, %d) = %d, want %d", tt.live, floor, got, tt.want)
		}
	}
}
