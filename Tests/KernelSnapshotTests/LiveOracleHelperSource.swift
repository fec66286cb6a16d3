// The C helper of the live oracle suite (LiveOracleTests.swift). It is
// kept here as text because a SwiftPM test target cannot hold C sources;
// LiveOracleHelper.built writes it to a temporary directory and compiles
// it with cc. Each case sets up one shape of mappings, prints
// `REGION name start end`, `INFO key value`, `CHILD pid` and finally
// `READY pid` (or `SKIP reason` / `FAIL reason`), then blocks reading
// stdin until the test closes it. The process being captured is therefore
// quiet: it runs no code between READY and the capture.

enum LiveOracleHelperSource {
    static let c = #"""
/* PageWalk live-oracle helper: builds one shape of mappings, reports the
 * regions on stdout, then blocks on stdin until it is closed (EOF).
 *
 * After READY the process must not touch a page it has not touched before:
 * it is built with -z now (no lazy symbol binding through ld.so after
 * READY), and it runs the read(2) wrapper once (a zero-length read) before
 * READY so that the libc text it blocks in is already mapped. The forked
 * child does the same before it signals the parent. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

#define PG 4096UL
#define PMD (2UL << 20)

static const char *dir = "/tmp";
static volatile unsigned long sink;

static void skip(const char *what) {
    printf("SKIP %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(0);
}
static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}
static void region(const char *name, void *p, size_t len) {
    printf("REGION %s %lx %lx\n", name, (unsigned long)p, (unsigned long)p + len);
}
static void info(const char *key, long value) { printf("INFO %s %ld\n", key, value); }

/* A mapping aligned to `align`, with one PROT_NONE page left on each side
 * so that it never merges with a neighbouring mapping. */
static char *map_aligned(size_t len, size_t align, int prot, int flags, int fd, off_t off) {
    if (align < PG) align = PG;
    size_t total = len + align + 2 * PG;
    char *raw = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) fail("mmap reserve");
    char *a = (char *)(((uintptr_t)raw + PG + align - 1) & ~(uintptr_t)(align - 1));
    if (a - PG > raw) munmap(raw, (size_t)(a - PG - raw));
    char *top = a + len + PG;
    if (raw + total > top) munmap(top, (size_t)(raw + total - top));
    char *p = mmap(a, len, prot, flags | MAP_FIXED, fd, off);
    if (p == MAP_FAILED) fail("mmap fixed");
    return p;
}
static char *anon(size_t len, size_t align) {
    return map_aligned(len, align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}
static void wr(char *p, size_t len, int v) { for (size_t i = 0; i < len; i += PG) p[i] = (char)v; }
static void rd(char *p, size_t len) { for (size_t i = 0; i < len; i += PG) sink += (unsigned char)p[i]; }

/* A file of `len` bytes under dir, written and fsync'd (clean page cache). */
static int make_file(const char *name, size_t len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) fail("open file");
    char buf[4096];
    memset(buf, 0x41, sizeof buf);
    for (size_t o = 0; o < len; o += sizeof buf) {
        buf[0] = (char)(o / PG);
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) fail("write file");
    }
    if (fsync(fd) != 0) fail("fsync");
    return fd;
}

/* lru_add_drain_all(): do_mlock() drains every CPU's folio batches, so LRU,
 * active and lazyfree state is settled before the capture. */
static void settle(void) {
    char *p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail("mmap settle");
    if (mlock(p, PG) == 0) munlock(p, PG);
    munmap(p, PG);
}

static void case_anon(void) {
    char *z = anon(16 * PG, PG);
    rd(z, 16 * PG);
    region("anon-read-zero", z, 16 * PG);
    char *w = anon(32 * PG, PG);
    wr(w, 32 * PG, 1);
    region("anon-written", w, 32 * PG);
    char *h = anon(32 * PG, PG);
    wr(h, 8 * PG, 2);
    rd(h + 8 * PG, 8 * PG);
    region("anon-mixed", h, 32 * PG);
}

static void case_thp(void) {
    char *t = anon(2 * PMD, PMD);
    if (madvise(t, 2 * PMD, MADV_HUGEPAGE) != 0) skip("MADV_HUGEPAGE");
    wr(t, 2 * PMD, 3);
    region("thp-written", t, 2 * PMD);
    char *z = anon(PMD, PMD);
    madvise(z, PMD, MADV_HUGEPAGE);
    rd(z, PMD);
    region("thp-read-hugezero", z, PMD);
}

/* One mTHP size (the test enables only that size): four folios' worth,
 * aligned, written. */
static void case_mthp(size_t kb) {
    size_t sz = kb << 10;
    char *m = anon(4 * sz, PMD);
    wr(m, 4 * sz, 4);
    char name[32];
    snprintf(name, sizeof name, "mthp-%zuK", kb);
    region(name, m, 4 * sz);
}

static void case_file_private(void) {
    int fd = make_file("oracle-private.dat", 32 * PG);
    char *c = map_aligned(32 * PG, PG, PROT_READ, MAP_PRIVATE, fd, 0);
    rd(c, 32 * PG);
    region("file-private-ro-clean", c, 32 * PG);
    char *w = map_aligned(32 * PG, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    rd(w, 32 * PG);
    wr(w + 4 * PG, 8 * PG, 5);
    region("file-private-cow", w, 32 * PG);
    close(fd);
}

static void case_file_shared(void) {
    int fd = make_file("oracle-shared.dat", 32 * PG);
    char *d = map_aligned(32 * PG, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    rd(d, 32 * PG);
    wr(d + 8 * PG, 8 * PG, 6);
    region("file-shared-dirty", d, 32 * PG);
    int fd2 = make_file("oracle-shared-clean.dat", 16 * PG);
    char *c = map_aligned(16 * PG, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
    rd(c, 16 * PG);
    region("file-shared-clean", c, 16 * PG);
    close(fd);
    close(fd2);
}

static void case_shmem(void) {
    int fd = (int)syscall(SYS_memfd_create, "oracle", 0);
    if (fd < 0) skip("memfd_create");
    if (ftruncate(fd, 32 * PG) != 0) fail("ftruncate");
    char *m = map_aligned(32 * PG, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    wr(m, 16 * PG, 7);
    rd(m + 16 * PG, 8 * PG);
    region("memfd", m, 32 * PG);
    char *s = map_aligned(16 * PG, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    wr(s, 12 * PG, 8);
    region("shared-anon", s, 16 * PG);
    close(fd);
}

/* Shmem large folios: run with shmem_enabled=always (the test sets it). */
static void case_shmem_thp(void) {
    int fd = (int)syscall(SYS_memfd_create, "oracle-thp", 0);
    if (fd < 0) skip("memfd_create");
    if (ftruncate(fd, 2 * PMD) != 0) fail("ftruncate");
    char *m = map_aligned(2 * PMD, PMD, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    wr(m, 2 * PMD, 27);
    region("memfd-thp", m, 2 * PMD);
    char *s = map_aligned(PMD, PMD, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    wr(s, PMD, 28);
    region("shared-anon-thp", s, PMD);
    char *a = anon(PMD, PMD);   /* no MADV_HUGEPAGE: THP only under enabled=always */
    wr(a, PMD, 29);
    region("anon-thp-always", a, PMD);
    close(fd);
}

static void case_mlock(void) {
    char *a = anon(32 * PG, PG);
    wr(a, 32 * PG, 9);
    if (mlock(a, 32 * PG) != 0) skip("mlock");
    region("mlocked-anon", a, 32 * PG);
    int fd = make_file("oracle-mlock.dat", 16 * PG);
    char *f = map_aligned(16 * PG, PG, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mlock(f, 16 * PG) != 0) skip("mlock file");
    region("mlocked-file", f, 16 * PG);
    close(fd);
    char *o = anon(32 * PG, PG);
    if (mlock2(o, 32 * PG, MLOCK_ONFAULT) != 0) skip("mlock2(MLOCK_ONFAULT)");
    wr(o, 8 * PG, 10);
    region("mlock-onfault", o, 32 * PG);
}

static void case_madv_free(void) {
    char *a = anon(64 * PG, PG);
    wr(a, 64 * PG, 11);
    if (madvise(a + 16 * PG, 32 * PG, MADV_FREE) != 0) skip("MADV_FREE");
    /* Re-dirty two of the freed pages: they stop being lazyfree. */
    wr(a + 16 * PG, 2 * PG, 12);
    region("madv-free", a, 64 * PG);
}

static void case_guard(void) {
    char *a = anon(32 * PG, PG);
    wr(a, 32 * PG, 13);
    if (madvise(a + 8 * PG, 4 * PG, MADV_GUARD_INSTALL) != 0) skip("MADV_GUARD_INSTALL");
    if (madvise(a + 20 * PG, 1 * PG, MADV_GUARD_INSTALL) != 0) skip("MADV_GUARD_INSTALL");
    region("guarded-anon", a, 32 * PG);
    int fd = make_file("oracle-guard.dat", 16 * PG);
    char *f = map_aligned(16 * PG, PG, PROT_READ, MAP_PRIVATE, fd, 0);
    rd(f, 16 * PG);
    if (madvise(f + 4 * PG, 2 * PG, MADV_GUARD_INSTALL) != 0) skip("MADV_GUARD_INSTALL file");
    region("guarded-file", f, 16 * PG);
    close(fd);
}

static long count_swapped(char *p, size_t len) {
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0) return -1;
    long n = 0;
    for (size_t o = 0; o < len; o += PG) {
        uint64_t w = 0;
        if (pread(fd, &w, 8, (off_t)(((uintptr_t)p + o) / PG * 8)) == 8 && (w >> 62 & 1)) n++;
    }
    close(fd);
    return n;
}

static void case_swap(void) {
    char *a = anon(64 * PG, PG);
    wr(a, 64 * PG, 14);
    if (madvise(a, 64 * PG, MADV_PAGEOUT) != 0) skip("MADV_PAGEOUT");
    usleep(200 * 1000);
    long n = count_swapped(a, 64 * PG);
    info("swapped", n);
    if (n == 0) { errno = 0; skip("nothing swapped out"); }
    /* Read back 8 (swap cache stays), write back 8 (swap freed). */
    rd(a + 8 * PG, 8 * PG);
    wr(a + 24 * PG, 8 * PG, 15);
    region("swapped-anon", a, 64 * PG);
}

static void case_hugetlb(void) {
    char *p = mmap(NULL, PMD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT), -1, 0);
    if (p == MAP_FAILED) skip("MAP_HUGETLB private");
    wr(p, PMD, 16);
    region("hugetlb-private", p, PMD);
    char *s = mmap(NULL, PMD, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT), -1, 0);
    if (s == MAP_FAILED) skip("MAP_HUGETLB shared");
    wr(s, PMD, 17);
    region("hugetlb-shared", s, PMD);
}

/* Parent sets up anon, THP, private-file and swapped memory, forks; the
 * child breaks COW on part of each. Both stay alive. */
static pid_t child = 0;
static void case_fork(int want_swap) {
    char *a = anon(64 * PG, PG);
    wr(a, 64 * PG, 18);
    region("fork-anon", a, 64 * PG);
    char *t = anon(PMD, PMD);
    madvise(t, PMD, MADV_HUGEPAGE);
    wr(t, PMD, 19);
    region("fork-thp", t, PMD);
    int fd = make_file("oracle-fork.dat", 16 * PG);
    char *f = map_aligned(16 * PG, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    rd(f, 16 * PG);
    wr(f, 4 * PG, 20);
    region("fork-file-private", f, 16 * PG);
    close(fd);
    char *s = anon(32 * PG, PG);
    wr(s, 32 * PG, 21);
    if (want_swap) {
        if (madvise(s, 32 * PG, MADV_PAGEOUT) != 0) skip("MADV_PAGEOUT");
        usleep(200 * 1000);
        info("swapped", count_swapped(s, 32 * PG));
    }
    region("fork-swapped", s, 32 * PG);
    int go[2];
    if (pipe(go) != 0) fail("pipe");
    fflush(stdout);
    child = fork();
    if (child < 0) fail("fork");
    if (child == 0) {
        close(go[0]);
        wr(a, 32 * PG, 22);          /* COW break on half the anon pages */
        wr(t + 7 * PG, PG, 23);      /* splits the child's PMD, one COW page */
        wr(f + 8 * PG, 2 * PG, 24);  /* COW on two more file pages */
        if (want_swap) rd(s, 4 * PG); /* swap four in (shared swap cache) */
        settle();
        char b;
        if (read(0, &b, 0) < 0) _exit(1);   /* map the read path now */
        char one = 1;
        if (write(go[1], &one, 1) != 1) _exit(1);
        while (read(0, &b, 1) > 0) {}
        _exit(0);
    }
    close(go[1]);
    char b;
    if (read(go[0], &b, 1) != 1) fail("child did not start");
    close(go[0]);
    printf("CHILD %d\n", (int)child);
}

/* Large folios spanning several VMAs after mprotect of their middle. */
static void case_split(void) {
    char *t = anon(PMD, PMD);
    if (madvise(t, PMD, MADV_HUGEPAGE) != 0) skip("MADV_HUGEPAGE");
    wr(t, PMD, 25);
    if (mprotect(t + PMD / 2, 16 * PG, PROT_READ) != 0) fail("mprotect thp");
    region("split-thp", t, PMD);
    char *m = anon(16 * 16 * PG, PMD);  /* 64K mTHPs when the 64kB knob is on */
    wr(m, 16 * 16 * PG, 26);
    if (mprotect(m + 8 * PG, 16 * PG, PROT_READ) != 0) fail("mprotect mthp");
    region("split-mthp64K", m, 16 * 16 * PG);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: helper CASE [DIR]\n"); return 2; }
    if (argc > 2) dir = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *c = argv[1];
    if (!strcmp(c, "anon")) case_anon();
    else if (!strcmp(c, "thp")) case_thp();
    else if (!strncmp(c, "mthp-", 5)) case_mthp((size_t)atol(c + 5));
    else if (!strcmp(c, "file-private")) case_file_private();
    else if (!strcmp(c, "file-shared")) case_file_shared();
    else if (!strcmp(c, "shmem")) case_shmem();
    else if (!strcmp(c, "shmem-thp")) case_shmem_thp();
    else if (!strcmp(c, "mlock")) case_mlock();
    else if (!strcmp(c, "madv-free")) case_madv_free();
    else if (!strcmp(c, "guard")) case_guard();
    else if (!strcmp(c, "swap")) case_swap();
    else if (!strcmp(c, "hugetlb")) case_hugetlb();
    else if (!strcmp(c, "fork")) case_fork(0);
    else if (!strcmp(c, "fork-swap")) case_fork(1);
    else if (!strcmp(c, "split")) case_split();
    else { fprintf(stderr, "unknown case %s\n", c); return 2; }
    settle();
    char b;
    if (read(0, &b, 0) < 0) fail("read");   /* map the read path now */
    fflush(stdout);
    /* Line-buffered: this printf writes the line; nothing new runs after it. */
    printf("READY %d\n", (int)getpid());
    while (read(0, &b, 1) > 0) {}
    if (child > 0) { kill(child, SIGKILL); waitpid(child, NULL, 0); }
    return 0;
}
"""#
}
