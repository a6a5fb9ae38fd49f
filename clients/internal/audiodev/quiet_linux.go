//go:build cgo && linux

package audiodev

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>

// ALSA's library prints its complaints (no card, unknown PCM) to stderr,
// which in a full-screen terminal client scribbles over the screen. This
// handler keeps it quiet; what failed reaches the user as our errors.
static void parley_alsa_quiet(const char *file, int line, const char *function, int err, const char *fmt, ...) {}

static void parley_silence_alsa(void) {
	void *h = dlopen("libasound.so.2", RTLD_NOW | RTLD_GLOBAL);
	if (!h) {
		return; // no ALSA: nothing to silence
	}
	typedef int (*set_handler)(void *);
	set_handler set = (set_handler)dlsym(h, "snd_lib_error_set_handler");
	if (set) {
		set((void *)parley_alsa_quiet);
	}
	// h stays open: miniaudio opens the same library, and the handler
	// must outlive it.
}
*/
import "C"

import "sync"

var quietOnce sync.Once

// quietSoundSystem silences the sound libraries' own printing (once).
func quietSoundSystem() { quietOnce.Do(func() { C.parley_silence_alsa() }) }
