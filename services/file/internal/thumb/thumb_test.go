package thumb

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"
)

// twoColours is w×h, the left half red and the right half blue.
func twoColours(w, h int, alpha uint8) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{R: 255, A: alpha}
			if x >= w/2 {
				c = color.NRGBA{B: 255, A: alpha}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

func encode(t testing.TB, kind string, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	var err error
	switch kind {
	case "png":
		err = png.Encode(&b, img)
	case "jpeg":
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 95})
	case "gif":
		err = gif.Encode(&b, img, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withOrientation inserts an EXIF APP1 segment (big-endian TIFF, one IFD
// entry) right after the JPEG's SOI marker.
func withOrientation(jpg []byte, orient uint16) []byte {
	tiff := []byte("MM\x00*\x00\x00\x00\x08\x00\x01")
	entry := make([]byte, 12)
	binary.BigEndian.PutUint16(entry[0:], 0x0112)
	binary.BigEndian.PutUint16(entry[2:], 3)
	binary.BigEndian.PutUint32(entry[4:], 1)
	binary.BigEndian.PutUint16(entry[8:], orient)
	tiff = append(append(tiff, entry...), 0, 0, 0, 0)
	seg := append([]byte("Exif\x00\x00"), tiff...)
	app1 := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(app1[2:], uint16(len(seg)+2))
	out := append([]byte{}, jpg[:2]...)
	out = append(append(out, app1...), seg...)
	return append(out, jpg[2:]...)
}

// tinyWebP is a 1×1 lossless WebP (no pure-Go WebP encoder exists).
const tinyWebP = "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA=="

func decodeThumb(t *testing.T, b []byte) image.Image {
	t.Helper()
	if Sniff(b) != "image/jpeg" {
		t.Fatalf("thumbnail is not a JPEG: %q", b[:min(len(b), 8)])
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("thumbnail does not decode: %v", err)
	}
	return img
}

func near(c color.Color, r, g, b uint32) bool {
	cr, cg, cb, _ := c.RGBA()
	d := func(a, b uint32) bool { return max(a>>8, b)-min(a>>8, b) < 48 }
	return d(cr, r) && d(cg, g) && d(cb, b)
}

func TestMake(t *testing.T) {
	webp, err := base64.StdEncoding.DecodeString(tinyWebP)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		data       []byte
		w, h       int
		leftRed    bool // the left edge is red, the right edge blue
		sniff      string
		whiteAlpha bool // transparent: on white
	}{
		{"png landscape", encode(t, "png", twoColours(800, 400, 255)), 160, 80, true, "image/png", false},
		{"jpeg portrait", encode(t, "jpeg", twoColours(300, 900, 255)), 53, 160, true, "image/jpeg", false},
		{"gif", encode(t, "gif", twoColours(320, 320, 255)), 160, 160, true, "image/gif", false},
		{"small png kept at its size", encode(t, "png", twoColours(50, 30, 255)), 50, 30, true, "image/png", false},
		{"transparent png on white", encode(t, "png", twoColours(200, 200, 0)), 160, 160, false, "image/png", true},
		{"webp", webp, 1, 1, false, "image/webp", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Sniff(c.data[:min(len(c.data), SniffLen)]); got != c.sniff {
				t.Fatalf("Sniff = %q, want %q", got, c.sniff)
			}
			out, err := Make(c.data)
			if err != nil {
				t.Fatalf("Make: %v", err)
			}
			img := decodeThumb(t, out)
			if b := img.Bounds(); b.Dx() != c.w || b.Dy() != c.h {
				t.Fatalf("thumbnail is %dx%d, want %dx%d", b.Dx(), b.Dy(), c.w, c.h)
			}
			b := img.Bounds()
			if c.leftRed {
				if l, r := img.At(1, b.Dy()/2), img.At(b.Dx()-2, b.Dy()/2); !near(l, 255, 0, 0) || !near(r, 0, 0, 255) {
					t.Fatalf("left %v right %v: want red then blue", l, r)
				}
			}
			if c.whiteAlpha && !near(img.At(b.Dx()/2, b.Dy()/2), 255, 255, 255) {
				t.Fatalf("transparent picture: centre %v, want white", img.At(b.Dx()/2, b.Dy()/2))
			}
			if len(out) > 16<<10 {
				t.Fatalf("thumbnail is %d bytes; it travels in events and lists and should stay small", len(out))
			}
		})
	}
}

// TestMakeOrientation: a photo stored sideways with EXIF orientation 6
// (turn 90° clockwise to view) gets an upright thumbnail.
func TestMakeOrientation(t *testing.T) {
	stored := encode(t, "jpeg", twoColours(400, 200, 255)) // red left, blue right
	for _, c := range []struct {
		orient       uint16
		w, h         int
		first, other [3]uint32 // colour at the start and the end of the long axis
	}{
		{1, 160, 80, [3]uint32{255, 0, 0}, [3]uint32{0, 0, 255}},
		{3, 160, 80, [3]uint32{0, 0, 255}, [3]uint32{255, 0, 0}},
		{6, 80, 160, [3]uint32{255, 0, 0}, [3]uint32{0, 0, 255}}, // red on top
		{8, 80, 160, [3]uint32{0, 0, 255}, [3]uint32{255, 0, 0}}, // blue on top
	} {
		data := withOrientation(stored, c.orient)
		if got := Orientation(data); got != int(c.orient) {
			t.Fatalf("Orientation = %d, want %d", got, c.orient)
		}
		out, err := Make(data)
		if err != nil {
			t.Fatal(err)
		}
		img := decodeThumb(t, out)
		b := img.Bounds()
		if b.Dx() != c.w || b.Dy() != c.h {
			t.Fatalf("orientation %d: %dx%d, want %dx%d", c.orient, b.Dx(), b.Dy(), c.w, c.h)
		}
		var a, z color.Color
		if c.w > c.h {
			a, z = img.At(2, b.Dy()/2), img.At(b.Dx()-3, b.Dy()/2)
		} else {
			a, z = img.At(b.Dx()/2, 2), img.At(b.Dx()/2, b.Dy()-3)
		}
		if !near(a, c.first[0], c.first[1], c.first[2]) || !near(z, c.other[0], c.other[1], c.other[2]) {
			t.Fatalf("orientation %d: ends %v and %v", c.orient, a, z)
		}
	}
}

// hugePNG is a valid PNG header and IHDR claiming w×h pixels, with no data.
func hugePNG(w, h uint32) []byte {
	ihdr := make([]byte, 17)
	copy(ihdr, "IHDR")
	binary.BigEndian.PutUint32(ihdr[4:], w)
	binary.BigEndian.PutUint32(ihdr[8:], h)
	ihdr[12], ihdr[13] = 8, 6 // 8-bit RGBA
	out := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0d")
	out = append(out, ihdr...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(ihdr))
}

func TestMakeRefuses(t *testing.T) {
	good := encode(t, "jpeg", twoColours(64, 64, 255))
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"text", []byte("hello, this is not a picture"), ErrNotImage},
		{"pdf", []byte("%PDF-1.7\n"), ErrNotImage},
		{"decompression bomb", hugePNG(100_000, 100_000), ErrTooLarge},
		{"too many bytes", append(append([]byte{}, good...), make([]byte, MaxBytes)...), ErrTooLarge},
		{"truncated jpeg", good[:len(good)/2], ErrDecode},
		{"empty", nil, ErrNotImage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Make(c.data); !errors.Is(err, c.want) {
				t.Fatalf("Make = %v, want %v", err, c.want)
			}
		})
	}
}

func FuzzOrientation(f *testing.F) {
	jpg := encode(f, "jpeg", twoColours(8, 8, 255))
	f.Add(withOrientation(jpg, 6))
	f.Add(jpg)
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		if o := Orientation(b); o < 1 || o > 8 {
			t.Fatalf("Orientation = %d", o)
		}
	})
}

func FuzzMake(f *testing.F) {
	f.Add(encode(f, "png", twoColours(16, 8, 255)))
	f.Add(withOrientation(encode(f, "jpeg", twoColours(8, 16, 255)), 5))
	f.Add(encode(f, "gif", twoColours(4, 4, 255)))
	f.Add(hugePNG(1<<20, 1<<20))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := Make(b)
		if err != nil {
			return
		}
		img, derr := jpeg.Decode(bytes.NewReader(out))
		if derr != nil {
			t.Fatalf("Make returned an undecodable JPEG: %v", derr)
		}
		if bb := img.Bounds(); bb.Dx() > Side || bb.Dy() > Side || bb.Dx() < 1 || bb.Dy() < 1 {
			t.Fatalf("thumbnail %v", bb)
		}
	})
}

// TestMakeNoisyStaysSmall: a picture of noise, the worst case for JPEG,
// still gives a thumbnail of about MaxThumbBytes.
func TestMakeNoisyStaysSmall(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 480, 480))
	var s uint32 = 1
	for i := range img.Pix {
		s = s*1664525 + 1013904223
		img.Pix[i] = uint8(s >> 24)
	}
	for i := 3; i < len(img.Pix); i += 4 {
		img.Pix[i] = 255
	}
	out, err := Make(encode(t, "png", img))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > MaxThumbBytes+4<<10 {
		t.Fatalf("noisy thumbnail %d bytes", len(out))
	}
	t.Logf("noisy 160x160 thumbnail: %d bytes", len(out))
}
