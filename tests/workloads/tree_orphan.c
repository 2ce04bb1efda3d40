/* `tree_orphan sub|nosub`: makes an orphan. With `sub` this process first becomes
 * a child subreaper (prctl PR_SET_CHILD_SUBREAPER). It forks a child that forks a
 * grandchild and exits at once. Lines on stdout:
 *   "child=C grandchild=G"  once the child has exited and been reaped here
 *   "reparented ppid=P"     written by the grandchild once its parent changed
 * Both then wait for EOF on stdin; this process reaps the grandchild if it can
 * (`sub`) and exits 0. Exit codes 2..7 mean a step failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void say(const char *s) {
    size_t len = strlen(s);
    if (write(1, s, len) != (ssize_t)len)
        _exit(7);
}

static void wait_eof(void) {
    char buf[256];
    while (read(0, buf, sizeof buf) > 0) {
    }
}

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    int sub = strcmp(argv[1], "sub") == 0;
    if (sub && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        return 3;
    int p[2];
    if (pipe(p) != 0)
        return 4;
    pid_t child = fork();
    if (child < 0)
        return 5;
    if (child == 0) {
        pid_t me = getpid();
        pid_t gc = fork();
        if (gc < 0)
            _exit(5);
        if (gc == 0) {
            close(p[0]);
            close(p[1]);
            struct timespec ms = {0, 1000000};
            for (int i = 0; i < 20000 && getppid() == me; i++)
                nanosleep(&ms, NULL);
            char line[64];
            snprintf(line, sizeof line, "reparented ppid=%d\n", (int)getppid());
            say(line);
            wait_eof();
            _exit(0);
        }
        if (write(p[1], &gc, sizeof gc) != sizeof gc)
            _exit(6);
        _exit(0);
    }
    close(p[1]);
    pid_t gc;
    if (read(p[0], &gc, sizeof gc) != sizeof gc)
        return 6;
    int status;
    if (waitpid(child, &status, 0) != child)
        return 6;
    char line[64];
    snprintf(line, sizeof line, "child=%d grandchild=%d\n", (int)child, (int)gc);
    say(line);
    wait_eof();
    if (sub) {
        while (waitpid(-1, &status, 0) > 0 || errno == EINTR) {
        }
    }
    return 0;
}
