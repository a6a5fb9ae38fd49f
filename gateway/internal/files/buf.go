package files

import "sync"

// Part buffers: one per PATCH in progress, at most one part each. The
// common part size (8 MiB) is pooled.
const pooledSize = 8 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, pooledSize); return &b }}

func getBuf(size int) []byte {
	if size == pooledSize {
		return (*bufPool.Get().(*[]byte))[:0]
	}
	return make([]byte, 0, size)
}

func putBuf(b []byte) {
	if cap(b) == pooledSize {
		b = b[:0]
		bufPool.Put(&b)
	}
}
