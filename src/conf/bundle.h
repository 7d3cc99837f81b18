/*
 * bundle: everything a configuration load read, so that a worker can load the
 * same configuration without touching the disk or DNS (DESIGN.md, Reload).
 *
 * The master loads a new file through a recording source: every file read
 * (main file, includes, certificates, keys), every include glob's matches and
 * every name resolution goes to the filesystem and the resolver once and is
 * kept here; what the loader gets back is always the recorded copy, so the
 * master validates exactly the bytes the workers will load. The serialized
 * bundle goes to the workers in a sealed memfd; each maps it and loads the
 * same file through a bundle source, which answers only from the bundle (a
 * miss is an error, never a fallback to the disk or the resolver).
 *
 * The bytes come from the master, but a worker still checks every length and
 * count against the mapping before it reads: a bug must not become a wild read.
 *
 * Ownership: gh_bundle_free releases the bundle, its mapping and its source.
 * What the source hands out (files, glob lists, addrinfo lists) are copies
 * that the loader frees as it would the libc ones.
 */
#ifndef GH_CONF_BUNDLE_H
#define GH_CONF_BUNDLE_H

#include <stddef.h>

#include "conf/source.h"

#define GH_BUNDLE_MAX         (64u << 20) /* bytes of one serialized bundle */
#define GH_BUNDLE_MAX_ENTRIES 65536

typedef struct gh_bundle gh_bundle;

/* An empty bundle that records what is read through gh_bundle_source (the master). NULL: out of memory. */
gh_bundle *gh_bundle_recorder(void);

/* A bundle parsed from data[0..len) (copied): NULL with a reason in err if anything is malformed. */
gh_bundle *gh_bundle_parse(const void *data, size_t len, char *err, size_t errlen);

/* Maps a sealed memfd from gh_bundle_memfd and parses it; the fd stays the caller's. */
gh_bundle *gh_bundle_from_memfd(int fd, char *err, size_t errlen);

void gh_bundle_free(gh_bundle *b);

/* The source to load through: recording (filesystem on a miss) or answering from the bundle only. */
const gh_conf_source *gh_bundle_source(gh_bundle *b);

/*
 * The serialized recording in a new memfd, sealed against writes and resizes
 * (F_SEAL_WRITE|F_SEAL_GROW|F_SEAL_SHRINK), so no process can change what
 * the workers read while they read it. Returns the fd, or -1 (errno; also when
 * a recording ran out of memory or grew past GH_BUNDLE_MAX).
 */
int gh_bundle_memfd(const gh_bundle *b);

/* Serialized size in bytes (for logs and tests). */
size_t gh_bundle_size(const gh_bundle *b);

/* The serialized bytes (recording or parsed); valid until the bundle is freed. */
const void *gh_bundle_data(const gh_bundle *b);

#endif
