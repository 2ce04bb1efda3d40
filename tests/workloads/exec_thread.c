/* A thread that is not the leader writes its tid to stdout, then execs
 * /bin/true exec-from-thread. The main thread waits in pthread_join until
 * the exec kills it. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static void *worker(void *arg) {
    (void)arg;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", (int)gettid());
    if (write(1, buf, n) != n)
        _exit(104);
    char *argv[] = {"true", "exec-from-thread", NULL};
    execv("/bin/true", argv);
    _exit(105);
}

int main(void) {
    pthread_t th;
    if (pthread_create(&th, NULL, worker, NULL) != 0)
        return 102;
    pthread_join(th, NULL);
    return 106; /* not reached: the exec ends this thread */
}
