package filename

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitize(t *testing.T) {
	long := strings.Repeat("長", 200) + ".tar.gz"
	for _, tc := range []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"../../etc/passwd", "passwd"},
		{`..\..\Windows\system32\cmd.exe`, "cmd.exe"},
		{"/abs/path/报告 final.bin", "报告 final.bin"},
		{"..", "file"},
		{".", "file"},
		{"", "file"},
		{"   ", "file"},
		{"a\x00b\x1fc\u202ed.txt", "abcd.txt"}, // NUL, control, bidi override
		{`what?<>:"|*.txt`, "what_______.txt"},
		{" .hidden. ", "hidden"},
		{"emoji 🎉.png", "emoji 🎉.png"},
		{"bad\xffutf8.txt", "badutf8.txt"},
		{"CON", "_CON"},
		{"nul.txt", "_nul.txt"},
		{"com1.tar.gz", "_com1.tar.gz"},
		{"console.txt", "console.txt"},
		{"LPT0", "LPT0"},
		{"COM0.txt", "COM0.txt"},
		{"CONIN$", "_CONIN$"},
		{"conout$", "_conout$"},
		{"CONOUT$.log", "_CONOUT$.log"},
		{"conin$ .txt", "_conin$ .txt"},
		{"CONIN", "CONIN"},
		{"CONIN$$", "CONIN$$"},
		{"conın$", "conın$"}, // dotless ı: not ASCII, a file
		{"COM¹", "_COM¹"},
		{"com².txt", "_com².txt"},
		{"COM³.tar.gz", "_COM³.tar.gz"},
		{"COM⁴", "COM⁴"},
		{"LPT¹", "_LPT¹"},
		{"lpt³.doc", "_lpt³.doc"},
		{"LPT²x", "LPT²x"},
		{"COM10", "COM10"},
		{"CON .txt", "_CON .txt"},
		{"AUX.", "_AUX"},
	} {
		if got := Sanitize(tc.in); got != tc.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// A device name with a long extension still fits once prefixed.
	for _, in := range []string{"CON." + strings.Repeat("x", 300), "COM¹." + strings.Repeat("y", 300), "CON" + strings.Repeat(" ", 300) + "z"} {
		if got := Sanitize(in); len(got) > MaxBytes || reservedOnWindows(got) || !utf8.ValidString(got) {
			t.Errorf("Sanitize(%.12q...) = %d bytes %.12q..., reserved %v", in, len(got), got, reservedOnWindows(got))
		}
	}
	got := Sanitize(long)
	if len(got) > MaxBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, ".gz") {
		t.Errorf("long name: %d bytes, valid %v, %q", len(got), utf8.ValidString(got), got[len(got)-10:])
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"a/b", "../x", `c:\x`, "..", "\x00", "名前.txt", "CONIN$", "COM¹.txt", "lpt³"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := Sanitize(in)
		if got == "" || got == "." || got == ".." || strings.ContainsAny(got, "/\\\x00") || len(got) > MaxBytes || !utf8.ValidString(got) {
			t.Fatalf("Sanitize(%q) = %q", in, got)
		}
		if reservedOnWindows(got) {
			t.Fatalf("Sanitize(%q) = %q, a Windows device name", in, got)
		}
	})
}
