package tui

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"strings"

	"github.com/charmbracelet/lipgloss"
)

// previewCols is the width of a picture's preview in the chat, in cells.
const previewCols = 24

// thumbPreview draws a picture's thumbnail (the JPEG the server made, at
// most 160×160) in the terminal, inline under its offer: each cell is an
// upper half block whose foreground is one pixel and background the one
// below, so cells (about twice as tall as wide) show square pixels. At
// most cols cells wide; "" when the thumbnail does not decode. Colours go
// through lipgloss, so terminals without true colour get the nearest ones.
func thumbPreview(jpg []byte, cols int) string {
	if len(jpg) == 0 {
		return ""
	}
	img, err := jpeg.Decode(bytes.NewReader(jpg))
	if err != nil {
		return ""
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w == 0 || h == 0 {
		return ""
	}
	cw := min(cols, w)
	ph := max(2, (h*cw/w+1)/2*2) // pixel rows, even: two per cell
	var sb strings.Builder
	for y := 0; y < ph; y += 2 {
		if y > 0 {
			sb.WriteByte('\n')
		}
		for x := range cw {
			top := average(img, b, x, y, cw, ph)
			bottom := average(img, b, x, y+1, cw, ph)
			sb.WriteString(lipgloss.NewStyle().Foreground(hexColor(top)).Background(hexColor(bottom)).Render("▀"))
		}
	}
	return sb.String()
}

// average is the mean colour of the source pixels that cell (x, y) of a
// cw×ph grid covers.
func average(img image.Image, b image.Rectangle, x, y, cw, ph int) color.RGBA {
	x0, x1 := b.Min.X+x*b.Dx()/cw, b.Min.X+(x+1)*b.Dx()/cw
	y0, y1 := b.Min.Y+y*b.Dy()/ph, b.Min.Y+(y+1)*b.Dy()/ph
	x1, y1 = max(x1, x0+1), max(y1, y0+1)
	var r, g, bl, n uint64
	for yy := y0; yy < y1; yy++ {
		for xx := x0; xx < x1; xx++ {
			cr, cg, cb, _ := img.At(xx, yy).RGBA()
			r, g, bl, n = r+uint64(cr>>8), g+uint64(cg>>8), bl+uint64(cb>>8), n+1
		}
	}
	return color.RGBA{R: uint8(r / n), G: uint8(g / n), B: uint8(bl / n), A: 255}
}

func hexColor(c color.RGBA) lipgloss.Color {
	return lipgloss.Color(fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B))
}
