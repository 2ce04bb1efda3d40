/* A process of 4 threads (main + 3 workers). Prints "ready T" (T: the tid of the
 * worker that will exec) once all run, waits for a line on stdin, then that
 * worker, not the leader, execs `sleep 2`. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go;
static pid_t tids[3];
static int running;

static void *worker(void *arg) {
    long i = (long)arg;
    pthread_mutex_lock(&mu);
    tids[i] = gettid();
    running++;
    pthread_cond_broadcast(&cv);
    while (!go)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    if (i == 1) {
        char *argv[] = {"sleep", "2", NULL};
        execv("/bin/sleep", argv);
        _exit(105);
    }
    for (;;)
        pause();
    return NULL;
}

int main(void) {
    for (long i = 0; i < 3; i++) {
        pthread_t th;
        if (pthread_create(&th, NULL, worker, (void *)i) != 0)
            return 102;
    }
    pthread_mutex_lock(&mu);
    while (running < 3)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    printf("ready %d\n", (int)tids[1]);
    fflush(stdout);
    char buf[64];
    if (read(0, buf, sizeof buf) <= 0)
        return 103;
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (;;)
        pause();
}
