/* Starts 50 threads, all alive at once (so their tids are distinct), joins them,
 * prints their tids one per line, and exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#define N 50

static pthread_barrier_t barrier;
static pid_t tids[N];

static void *worker(void *arg) {
    tids[(long)arg] = gettid();
    pthread_barrier_wait(&barrier);
    return NULL;
}

int main(void) {
    pthread_t th[N];
    if (pthread_barrier_init(&barrier, NULL, N + 1) != 0)
        return 101;
    for (long i = 0; i < N; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)i) != 0)
            return 102;
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < N; i++)
        if (pthread_join(th[i], NULL) != 0)
            return 103;
    for (int i = 0; i < N; i++)
        printf("%d\n", (int)tids[i]);
    return 0;
}
