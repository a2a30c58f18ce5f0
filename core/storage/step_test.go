package storage_test

import (
	"testing"

	"github.com/nexus-os/keystored/core/storage"
)

func TestStep(t *testing.T) {
	var zero storage.Step
	if zero.Valid() {
		t.Error("the zero Step is valid")
	}
	if got, want := zero.String(), "Step(0)"; got != want {
		t.Errorf("zero Step String = %q, want %q", got, want)
	}
	if got, want := storage.Step(200).String(), "Step(200)"; got != want {
		t.Errorf("Step(200).String() = %q, want %q", got, want)
	}
	want := []struct {
		s    storage.Step
		name string
	}{
		{storage.StepMkdir, "mkdir"},
		{storage.StepCreateTemp, "create-temp"},
		{storage.StepWrite, "write"},
		{storage.StepFsync, "fsync"},
		{storage.StepRename, "rename"},
		{storage.StepDirFsync, "dir-fsync"},
		{storage.StepRemove, "remove"},
	}
	all := storage.Steps()
	if len(all) != len(want) {
		t.Fatalf("Steps() = %v, want %d steps", all, len(want))
	}
	for i, w := range want {
		if all[i] != w.s || !w.s.Valid() || w.s.String() != w.name {
			t.Errorf("Steps()[%d] = %v (valid %v), want %v named %q", i, all[i], all[i].Valid(), w.s, w.name)
		}
	}
}
