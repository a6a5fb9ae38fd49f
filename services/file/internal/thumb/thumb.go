// Package thumb recognises pictures by their bytes and makes the small JPEG
// thumbnails shown inline with a file offer. Only pure-Go decoders are used
// (image/jpeg, image/png, image/gif, golang.org/x/image/webp), and every
// input is bounded before it is decoded: a picture claiming more than
// MaxPixels is refused from its header, so a "decompression bomb" costs a
// few kilobytes of reading, not gigabytes of memory.
package thumb

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"net/http"

	"golang.org/x/image/draw"
	"golang.org/x/image/webp"
)

// Limits.
const (
	// Side is the largest width and height of a thumbnail.
	Side = 160
	// MaxPixels is the largest picture (width × height) thumbnailed: 40
	// megapixels (a decoded JPEG of that size is ~60 MB, a PNG up to 160 MB).
	MaxPixels = 40_000_000
	// MaxBytes is the largest encoded picture read for a thumbnail.
	MaxBytes = 48 << 20
	// SniffLen is how many leading bytes Sniff needs.
	SniffLen = 512
	// MaxThumbBytes is the size a thumbnail is kept under when a lower
	// JPEG quality can do it (noise-like pictures may stay a little above).
	MaxThumbBytes = 12 << 10
)

// Errors.
var (
	ErrNotImage = errors.New("thumb: not a supported picture (JPEG, PNG, GIF, WebP)")
	ErrTooLarge = errors.New("thumb: picture too large to thumbnail")
	ErrDecode   = errors.New("thumb: picture does not decode")
)

// Sniff returns the picture type of content from its first bytes
// ("image/jpeg", "image/png", "image/gif" or "image/webp"), or "" when
// they are not one of those, whatever the sender declared.
func Sniff(head []byte) string {
	switch ct := http.DetectContentType(head); ct {
	case "image/jpeg", "image/png", "image/gif", "image/webp":
		return ct
	}
	return ""
}

// Make decodes a picture (the whole file, at most MaxBytes) and returns a
// JPEG of at most Side×Side pixels keeping its aspect ratio, turned upright
// by its EXIF orientation, transparent areas on white.
func Make(data []byte) ([]byte, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	kind := Sniff(data[:min(len(data), SniffLen)])
	if kind == "" {
		return nil, ErrNotImage
	}
	decodeConfig, decode := decoders(kind)
	cfg, err := decodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("%w: %dx%d", ErrDecode, cfg.Width, cfg.Height)
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, fmt.Errorf("%w: %dx%d pixels", ErrTooLarge, cfg.Width, cfg.Height)
	}
	src, err := decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	orient := 1
	if kind == "image/jpeg" {
		orient = Orientation(data)
	}
	dst := scale(src, orient)
	// Busy pictures are encoded again at lower qualities to stay small:
	// thumbnails travel in every event and list of their file.
	var out bytes.Buffer
	for _, q := range []int{80, 65, 50} {
		out.Reset()
		if err := jpeg.Encode(&out, dst, &jpeg.Options{Quality: q}); err != nil {
			return nil, fmt.Errorf("thumb: encode: %w", err)
		}
		if out.Len() <= MaxThumbBytes {
			break
		}
	}
	return out.Bytes(), nil
}

func decoders(kind string) (func(r *bytes.Reader) (image.Config, error), func(r *bytes.Reader) (image.Image, error)) {
	switch kind {
	case "image/jpeg":
		return func(r *bytes.Reader) (image.Config, error) { return jpeg.DecodeConfig(r) },
			func(r *bytes.Reader) (image.Image, error) { return jpeg.Decode(r) }
	case "image/png":
		return func(r *bytes.Reader) (image.Config, error) { return png.DecodeConfig(r) },
			func(r *bytes.Reader) (image.Image, error) { return png.Decode(r) }
	case "image/gif": // the first frame
		return func(r *bytes.Reader) (image.Config, error) { return gif.DecodeConfig(r) },
			func(r *bytes.Reader) (image.Image, error) { return gif.Decode(r) }
	}
	return func(r *bytes.Reader) (image.Config, error) { return webp.DecodeConfig(r) },
		func(r *bytes.Reader) (image.Image, error) { return webp.Decode(r) }
}

// scale fits src in Side×Side after rotating it by the EXIF orientation
// (1-8), on a white background.
func scale(src image.Image, orient int) image.Image {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	if orient >= 5 { // 5-8 swap the axes
		w, h = h, w
	}
	tw, th := w, h
	if tw > Side || th > Side {
		if w >= h {
			tw, th = Side, max(1, h*Side/w)
		} else {
			tw, th = max(1, w*Side/h), Side
		}
	}
	// Large pictures are first brought to ~4× the target quickly; the
	// last step uses a good kernel on few pixels.
	if b.Dx() > 4*Side || b.Dy() > 4*Side {
		iw, ih := b.Dx(), b.Dy()
		f := max(float64(iw)/float64(4*Side), float64(ih)/float64(4*Side))
		mid := image.NewRGBA(image.Rect(0, 0, max(1, int(float64(iw)/f)), max(1, int(float64(ih)/f))))
		draw.Draw(mid, mid.Bounds(), image.White, image.Point{}, draw.Src)
		draw.ApproxBiLinear.Scale(mid, mid.Bounds(), src, b, draw.Over, nil)
		src, b = mid, mid.Bounds()
	}
	// Rotate, then scale into a white canvas.
	up := orientImage(src, orient)
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
	draw.Draw(dst, dst.Bounds(), &image.Uniform{C: color.White}, image.Point{}, draw.Src)
	draw.CatmullRom.Scale(dst, dst.Bounds(), up, up.Bounds(), draw.Over, nil)
	return dst
}

// orientImage returns src as it should be seen for an EXIF orientation.
func orientImage(src image.Image, orient int) image.Image {
	if orient <= 1 || orient > 8 {
		return src
	}
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	ow, oh := w, h
	if orient >= 5 {
		ow, oh = h, w
	}
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for y := range h {
		for x := range w {
			var dx, dy int
			switch orient {
			case 2: // mirrored
				dx, dy = w-1-x, y
			case 3: // rotated 180°
				dx, dy = w-1-x, h-1-y
			case 4: // mirrored vertically
				dx, dy = x, h-1-y
			case 5: // transposed
				dx, dy = y, x
			case 6: // rotated 90° clockwise to view
				dx, dy = h-1-y, x
			case 7: // transversed
				dx, dy = h-1-y, w-1-x
			case 8: // rotated 90° counter-clockwise to view
				dx, dy = y, w-1-x
			}
			out.Set(dx, dy, src.At(b.Min.X+x, b.Min.Y+y))
		}
	}
	return out
}
