/*
 * proctitle: the names ps and top show ("gatehouse: master", "gatehouse:
 * worker 0", "gatehouse: prober"), as nginx shows its processes.
 */
#ifndef GH_MAIN_PROCTITLE_H
#define GH_MAIN_PROCTITLE_H

/*
 * First thing in main: moves the argument strings and the environment to the
 * heap (argv[i] and environ point at the copies, so everything that keeps a
 * pointer into argv stays valid) and keeps their original area, where
 * /proc/PID/cmdline reads, for the title. 0, or -1 (no title then).
 */
int gh_proctitle_init(int argc, char **argv);

/*
 * Writes title over the original argument area (cut to fit; the rest is
 * NUL-filled) and sets the thread name (/proc/PID/comm, 15 bytes) to comm.
 */
void gh_proctitle_set(const char *title, const char *comm);

#endif
