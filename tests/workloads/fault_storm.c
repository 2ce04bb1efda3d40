/* A storm that runs until told to stop, for the fault tests.
 *   fault_storm FORKERS EXECERS THREADERS
 * starts FORKERS processes that fork children which _exit at once, EXECERS
 * processes that fork children which exec /bin/true, and THREADERS processes
 * that create and join threads, each in a loop (every child reaped). It prints
 * "ready" once every loop has gone round, then for each stdin line "count"
 * the totals so far, and at EOF of stdin stops the loops and prints the final
 * totals: "forks=F execs=E threads=T". Exits 0, or 2..6 on a failure. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

enum { FORK, EXEC, THREAD };

static long *counts; /* one per loop, shared */
static int stop_fd;  /* read end of the stop pipe: EOF once main closes its end */

static int stopped(void) {
    char c;
    return read(stop_fd, &c, 1) == 0;
}

static void *nop(void *arg) { return arg; }

static void loop(int kind, long *count) {
    char *const argv[] = {"true", NULL};
    while (!stopped()) {
        if (kind == THREAD) {
            pthread_t t;
            if (pthread_create(&t, NULL, nop, NULL) != 0 || pthread_join(t, NULL) != 0)
                _exit(4);
        } else {
            pid_t p = fork();
            if (p < 0)
                _exit(5);
            if (p == 0) {
                if (kind == EXEC)
                    execv("/bin/true", argv);
                _exit(kind == EXEC ? 127 : 0);
            }
            int st;
            if (waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                _exit(6);
        }
        __atomic_add_fetch(count, 1, __ATOMIC_RELAXED);
    }
    _exit(0);
}

static void totals(int n, const int *kinds) {
    long t[3] = {0, 0, 0};
    for (int i = 0; i < n; i++)
        t[kinds[i]] += __atomic_load_n(&counts[i], __ATOMIC_RELAXED);
    printf("forks=%ld execs=%ld threads=%ld\n", t[FORK], t[EXEC], t[THREAD]);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 4)
        return 2;
    int per[3] = {atoi(argv[1]), atoi(argv[2]), atoi(argv[3])};
    int n = per[0] + per[1] + per[2];
    if (n <= 0 || n > 64)
        return 2;
    counts = mmap(NULL, 64 * sizeof(long), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int fds[2];
    if (counts == MAP_FAILED || pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
        return 3;
    stop_fd = fds[0];
    int kinds[64], k = 0;
    pid_t pids[64];
    for (int kind = FORK; kind <= THREAD; kind++) {
        for (int j = 0; j < per[kind]; j++, k++) {
            kinds[k] = kind;
            pids[k] = fork();
            if (pids[k] < 0)
                return 3;
            if (pids[k] == 0) {
                close(fds[1]);
                loop(kind, &counts[k]);
            }
        }
    }
    close(fds[0]);
    for (int i = 0; i < n; i++)
        while (__atomic_load_n(&counts[i], __ATOMIC_RELAXED) == 0)
            usleep(1000);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin))
        if (strncmp(line, "count", 5) == 0)
            totals(n, kinds);
    close(fds[1]);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        int st;
        if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "fault_storm: loop %d (kind %d) ended with status %#x\n", i, kinds[i], st);
            failed = 1;
        }
    }
    totals(n, kinds);
    return failed ? 4 : 0;
}
