/* `tree_holder N`: a long-lived process with N threads. Starts N-1 threads that
 * block, prints "ready" once they all run, waits for EOF on stdin, exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_barrier_t started;

static void *block(void *arg) {
    (void)arg;
    pthread_barrier_wait(&started);
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1;
    if (n < 1 || n > 1000)
        return 2;
    if (pthread_barrier_init(&started, NULL, (unsigned)n) != 0)
        return 3;
    for (int i = 1; i < n; i++) {
        pthread_t th;
        if (pthread_create(&th, NULL, block, NULL) != 0)
            return 4;
    }
    pthread_barrier_wait(&started);
    printf("ready\n");
    fflush(stdout);
    char buf[256];
    while (read(0, buf, sizeof buf) > 0) {
    }
    return 0;
}
