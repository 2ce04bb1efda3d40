/* A thread writes its tid to stdout, then renames itself to "worker-x" with
 * pthread_setname_np. The process exits 0 once it is joined. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static void *worker(void *arg) {
    (void)arg;
    printf("%d\n", (int)gettid());
    fflush(stdout);
    if (pthread_setname_np(pthread_self(), "worker-x") != 0)
        return (void *)1;
    return NULL;
}

int main(void) {
    pthread_t th;
    void *ret = (void *)1;
    if (pthread_create(&th, NULL, worker, NULL) != 0)
        return 102;
    if (pthread_join(th, &ret) != 0 || ret != NULL)
        return 107;
    return 0;
}
