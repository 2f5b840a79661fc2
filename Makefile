# make; sudo make install [PREFIX=/usr/local] [DESTDIR=]; sudo make uninstall; make deb
# The work is in scripts/install.sh (files and places) and scripts/build-deb.sh (Debian packages).
PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo

.PHONY: all install uninstall deb

all:
	$(CARGO) build --release --locked

install:
	scripts/install.sh install PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)

uninstall:
	scripts/install.sh uninstall PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)

deb:
	scripts/build-deb.sh
