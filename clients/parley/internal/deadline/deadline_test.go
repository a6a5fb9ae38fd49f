package deadline

import (
	"testing"
	"time"
)

func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	if d == 0 { // closed now: time.After(0) could win the select
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func TestDeadline(t *testing.T) {
	d := New()
	if closedWithin(d.Wait(), 20*time.Millisecond) {
		t.Fatal("a new deadline passed")
	}
	d.Set(time.Now().Add(-time.Second))
	if !closedWithin(d.Wait(), 0) {
		t.Fatal("a deadline in the past has not passed")
	}
	d.Set(time.Time{})
	if closedWithin(d.Wait(), 20*time.Millisecond) {
		t.Fatal("a cleared deadline still passed")
	}
	d.Set(time.Now().Add(30 * time.Millisecond))
	ch := d.Wait()
	if closedWithin(ch, 5*time.Millisecond) {
		t.Fatal("passed before its time")
	}
	if !closedWithin(ch, 2*time.Second) {
		t.Fatal("a deadline 30 ms away never passed")
	}
	d.Set(time.Now().Add(time.Hour)) // extending after it passed reopens it
	if closedWithin(d.Wait(), 20*time.Millisecond) {
		t.Fatal("an extended deadline is still passed")
	}
}
