package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parleychat/parley/clients/parley/voice"
)

// writeWAV writes pcm as a 48 kHz mono WAV file and returns its path.
func writeWAV(t *testing.T, dir, name string, pcm []int16) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	must(t, err)
	w, err := voice.NewWAVWriter(f)
	must(t, err)
	must(t, w.Write(pcm))
	must(t, w.Close())
	must(t, f.Close())
	return path
}

func TestCallCommandUsage(t *testing.T) {
	dir, cfg := t.TempDir(), t.TempDir()
	good := writeWAV(t, dir, "voice.wav", make([]int16, 4800))
	text := filepath.Join(dir, "notes.wav")
	must(t, os.WriteFile(text, []byte("not audio at all"), 0o644))
	// A WAV of 8 kHz: calls need 48 kHz.
	low := make([]byte, 44)
	copy(low, "RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00")
	lowPath := filepath.Join(dir, "low.wav")
	must(t, os.WriteFile(lowPath, low, 0o644))

	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"call"}, exitUsage, "missing whom to call"},
		{[]string{"call", "@"}, exitUsage, "@ needs a username"},
		{[]string{"call", "@bob", "@carol"}, exitUsage, `unexpected argument "@carol"`},
		{[]string{"call", "@bob", "--duration", "-1s"}, exitUsage, "must be positive"},
		{[]string{"call", "@bob", "--ring", "0s"}, exitUsage, "must be positive"},
		{[]string{"call", "@bob", "--duration", "soon"}, exitUsage, "invalid value"},
		{[]string{"call", "@bob", "--in", filepath.Join(dir, "missing.wav")}, exitError, "no such file"},
		{[]string{"call", "@bob", "--in", text}, exitError, "not a WAV file"},
		{[]string{"call", "@bob", "--in", lowPath}, exitError, "8000 Hz"},
		{[]string{"call", "@bob", "--out", filepath.Join(dir, "no", "such", "dir.wav")}, exitError, "no such file"},
		{[]string{"--config-dir", cfg, "call", "@bob", "--in", good, "--out", filepath.Join(dir, "heard.wav")}, exitError, "not logged in"},
		{[]string{"--config-dir", cfg, "call", "dm.u1.u2"}, exitError, "not logged in"},
		{[]string{"answer", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"answer", "--wait", "0s"}, exitUsage, "must be positive"},
		{[]string{"answer", "--in", text}, exitError, "not a WAV file"},
		{[]string{"--config-dir", cfg, "answer", "--in", good}, exitError, "not logged in"},
		{[]string{"reject", "c1", "c2"}, exitUsage, `unexpected argument "c2"`},
		{[]string{"--config-dir", cfg, "reject", "c0123"}, exitError, "not logged in"},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, nil, "", tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("parley %q: exit %d, stderr %q; want %d and %q", tt.args, code, stderr, tt.code, tt.stderr)
		}
	}
	_, out, _ := runCLI(t, nil, "", "help")
	for _, cmd := range []string{"call ", "answer ", "reject "} {
		if !strings.Contains(out, "  "+cmd) {
			t.Errorf("help does not list %q:\n%s", cmd, out)
		}
	}
}

// TestCallAudio: before the answer the call says nothing and keeps
// nothing; then it says the WAV (the last frame padded), then silence;
// what it hears lands in --out sample for sample, and --record is an Ogg
// file.
func TestCallAudio(t *testing.T) {
	dir := t.TempDir()
	say := make([]int16, voice.FrameSamples+100)
	for i := range say {
		say[i] = int16(i%200 - 100)
	}
	in := writeWAV(t, dir, "say.wav", say)
	out, rec := filepath.Join(dir, "heard.wav"), filepath.Join(dir, "call.ogg")
	ca, err := openCallAudio(callFlags{in: in, out: out, record: rec})
	must(t, err)
	frame := make([]int16, voice.FrameSamples)
	heard := make([]int16, voice.FrameSamples)
	for i := range heard {
		heard[i] = int16(i)
	}

	must(t, ca.ReadFrame(frame))
	must(t, ca.WriteFrame(heard)) // before the answer: not kept
	if slices.ContainsFunc(frame, func(s int16) bool { return s != 0 }) {
		t.Error("audio said before the answer")
	}
	ca.start()
	var said []int16
	for range 3 {
		must(t, ca.ReadFrame(frame))
		said = append(said, frame...)
		must(t, ca.WriteFrame(heard))
	}
	want := append(append([]int16(nil), say...), make([]int16, 3*voice.FrameSamples-len(say))...)
	if !slices.Equal(said, want) {
		t.Error("what was said is not the WAV padded with silence")
	}
	must(t, ca.close())
	must(t, ca.close()) // idempotent

	f, err := os.Open(out)
	must(t, err)
	defer f.Close()
	got, err := voice.ReadWAV(f)
	must(t, err)
	if len(got) != 3*voice.FrameSamples || !slices.Equal(got[:voice.FrameSamples], heard) {
		t.Errorf("--out has %d samples, want the 3 frames heard after the answer", len(got))
	}
	b, err := os.ReadFile(rec)
	must(t, err)
	if !bytes.HasPrefix(b, []byte("OggS")) || !bytes.Contains(b, []byte("OpusHead")) {
		t.Errorf("--record is not an Ogg Opus file (%d bytes)", len(b))
	}
}
