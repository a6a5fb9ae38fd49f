package parley

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPlaceNeverOverwrites: a finished download takes the next free name.
func TestPlaceNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("notes.txt", "mine")
	write("notes (1).txt", "mine too")
	got, err := place(write("x.part", "theirs"), dir, "notes.txt")
	if err != nil || got != filepath.Join(dir, "notes (2).txt") {
		t.Fatalf("placed at %q, %v", got, err)
	}
	for name, want := range map[string]string{"notes.txt": "mine", "notes (1).txt": "mine too", "notes (2).txt": "theirs"} {
		if b, _ := os.ReadFile(filepath.Join(dir, name)); string(b) != want {
			t.Errorf("%s holds %q, want %q", name, b, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.part")); err == nil {
		t.Error("the part file is left behind")
	}
}
