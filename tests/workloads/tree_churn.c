/* Process or thread churn for the tree tests.
 *   tree_churn procs N BURST PAUSE_US    forks N children in bursts of BURST (each
 *                                        child _exits at once; a burst is reaped
 *                                        with waitpid before the next starts)
 *   tree_churn threads N BURST PAUSE_US  creates and joins N threads in bursts
 * and sleeps PAUSE_US between bursts. Prints one line about the ids it got:
 *   first=F last=L min=A max=B wraps=W
 * where W counts the ids lower than the one before: the pid range wrapped (ids
 * are handed out cyclically). Exits 0, or 2..6 on a failure. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct ids {
    long first, last, min, max, wraps, n;
};

static void note(struct ids *s, long id) {
    if (s->n == 0) {
        s->first = s->min = s->max = id;
    } else {
        if (id < s->last)
            s->wraps++;
        if (id < s->min)
            s->min = id;
        if (id > s->max)
            s->max = id;
    }
    s->last = id;
    s->n++;
}

static void *thread_main(void *arg) {
    *(pid_t *)arg = gettid();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5)
        return 2;
    long n = atol(argv[2]), burst = atol(argv[3]), pause_us = atol(argv[4]);
    if (n <= 0 || burst <= 0 || pause_us < 0)
        return 2;
    int threads = strcmp(argv[1], "threads") == 0;
    if (!threads && strcmp(argv[1], "procs") != 0)
        return 2;
    pid_t *ids = calloc((size_t)burst, sizeof *ids);
    pthread_t *th = calloc((size_t)burst, sizeof *th);
    if (!ids || !th)
        return 3;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    struct ids s = {0};
    for (long done = 0; done < n;) {
        long k = n - done < burst ? n - done : burst;
        for (long i = 0; i < k; i++) {
            if (threads) {
                if (pthread_create(&th[i], &attr, thread_main, &ids[i]) != 0)
                    return 4;
            } else {
                pid_t pid = fork();
                if (pid < 0)
                    return 4;
                if (pid == 0)
                    _exit(0);
                ids[i] = pid;
            }
        }
        for (long i = 0; i < k; i++) {
            if (threads) {
                if (pthread_join(th[i], NULL) != 0)
                    return 5;
            } else {
                int status;
                if (waitpid(ids[i], &status, 0) != ids[i])
                    return 6;
            }
            note(&s, ids[i]);
        }
        done += k;
        if (pause_us > 0)
            usleep((useconds_t)pause_us);
    }
    printf("first=%ld last=%ld min=%ld max=%ld wraps=%ld\n", s.first, s.last, s.min, s.max, s.wraps);
    return 0;
}
