# Install the C library of crates/ttm-ffi: libttm.a, libttm.so (soname
# libttm.so.0), include/ttm.h and a pkg-config file ttm.pc, so that
#   cc app.c $(pkg-config --cflags --libs ttm)
# works. Everything else is cargo's (see README.md).
#
#   make install                        # into /usr/local (sudo make install)
#   make install PREFIX=$HOME/.local    # anywhere; DESTDIR= for packaging
#   make uninstall PREFIX=...
#
# PROFILE=debug installs the debug build (scripts/test-c uses it).

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=
CARGO ?= cargo
PROFILE ?= release
VERSION := 0.1.0
SONAME := libttm.so.0

BUILD := target/$(PROFILE)
CARGO_PROFILE := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: all lib install uninstall

all: lib

lib:
	$(CARGO) build --locked -p ttm-ffi $(CARGO_PROFILE)

install: lib
	install -d "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(PKGCONFIGDIR)"
	install -m 644 $(BUILD)/libttm.a "$(DESTDIR)$(LIBDIR)/libttm.a"
	install -m 755 $(BUILD)/libttm.so "$(DESTDIR)$(LIBDIR)/libttm.so.$(VERSION)"
	ln -sf libttm.so.$(VERSION) "$(DESTDIR)$(LIBDIR)/$(SONAME)"
	ln -sf $(SONAME) "$(DESTDIR)$(LIBDIR)/libttm.so"
	install -m 644 include/ttm.h "$(DESTDIR)$(INCLUDEDIR)/ttm.h"
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    crates/ttm-ffi/ttm.pc.in > "$(DESTDIR)$(PKGCONFIGDIR)/ttm.pc"

uninstall:
	rm -f "$(DESTDIR)$(LIBDIR)/libttm.a" "$(DESTDIR)$(LIBDIR)/libttm.so" \
	    "$(DESTDIR)$(LIBDIR)/$(SONAME)" "$(DESTDIR)$(LIBDIR)/libttm.so.$(VERSION)" \
	    "$(DESTDIR)$(INCLUDEDIR)/ttm.h" "$(DESTDIR)$(PKGCONFIGDIR)/ttm.pc"
