/*
 * patina_deadline: a SQLite loadable extension that puts a deadline on what a connection runs.
 *
 *   SELECT patina_deadline(key, ms)
 *
 * ms > 0 arms a deadline ms milliseconds from now (CLOCK_MONOTONIC); ms = 0 clears it. When an
 * armed deadline passes, a watchdog thread calls sqlite3_interrupt() on the connection: the
 * running statement stops at its next loop jump with SQLITE_INTERRUPT. A deadline fires once.
 * The call returns 1 when the deadline armed before it fired, else 0.
 *
 * `key` (an integer) is bound by the first call after loading; later calls with another key are
 * refused, so SQL sent by users cannot clear the deadline that bounds it.
 *
 * Why a thread and not sqlite3_progress_handler(): better-sqlite3 compiles SQLite with
 * SQLITE_OMIT_PROGRESS_CALLBACK, so the VM never calls a progress handler (the extension API's
 * pointer to it is NULL). The VM does check the interrupt flag at every loop jump, and
 * sqlite3_interrupt() is documented as safe to call from another thread while the connection
 * is open.
 *
 * Each connection that loads the extension gets its own watchdog (state and thread); nothing
 * is shared between connections. The thread sleeps on a condition variable and is only woken
 * when a new deadline is earlier than the end of its current wait, so arming and clearing cost
 * a mutex and a clock read. It is stopped and joined when the connection closes (the SQL
 * function's destructor), before SQLite frees the connection.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

typedef struct Watchdog {
  sqlite3 *db;
  pthread_t thread;
  pthread_mutex_t mu; /* guards every field below */
  pthread_cond_t wake;
  int64_t deadline_ns; /* CLOCK_MONOTONIC; 0 when disarmed */
  int64_t wait_end_ns; /* when the thread's current wait ends; 0: it waits until woken */
  int fired;           /* the armed deadline passed and interrupted the connection */
  int keyed;
  sqlite3_int64 key;
  int stop;
} Watchdog;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits on w->wake (w->mu held) until woken or until the monotonic time end_ns. */
static void wait_until(Watchdog *w, int64_t end_ns) {
  struct timespec ts;
#ifdef __APPLE__
  /* macOS has no pthread_condattr_setclock: wait for the time left instead. */
  int64_t left = end_ns - now_ns();
  if (left < 0) left = 0;
  ts.tv_sec = (time_t)(left / 1000000000);
  ts.tv_nsec = (long)(left % 1000000000);
  pthread_cond_timedwait_relative_np(&w->wake, &w->mu, &ts);
#else
  ts.tv_sec = (time_t)(end_ns / 1000000000);
  ts.tv_nsec = (long)(end_ns % 1000000000);
  pthread_cond_timedwait(&w->wake, &w->mu, &ts);
#endif
}

static void *watch(void *arg) {
  Watchdog *w = arg;
  pthread_mutex_lock(&w->mu);
  while (!w->stop) {
    if (w->deadline_ns == 0) {
      w->wait_end_ns = 0;
      pthread_cond_wait(&w->wake, &w->mu);
    } else if (now_ns() >= w->deadline_ns) {
      /* Under w->mu: a clear that returned has no interrupt coming after it, and the
       * destructor cannot finish (nor the connection close) while this runs. */
      sqlite3_interrupt(w->db);
      w->deadline_ns = 0;
      w->fired = 1;
    } else {
      w->wait_end_ns = w->deadline_ns;
      wait_until(w, w->deadline_ns);
    }
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static void deadline_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  Watchdog *w = sqlite3_user_data(ctx);
  (void)argc;
  int ms_type = sqlite3_value_numeric_type(argv[1]);
  if (sqlite3_value_type(argv[0]) != SQLITE_INTEGER ||
      (ms_type != SQLITE_INTEGER && ms_type != SQLITE_FLOAT) || sqlite3_value_int64(argv[1]) < 0 ||
      sqlite3_value_int64(argv[1]) > INT32_MAX) {
    sqlite3_result_error(ctx, "patina_deadline(key, ms): an integer key, 0 <= ms < 2^31", -1);
    return;
  }
  sqlite3_int64 key = sqlite3_value_int64(argv[0]);
  sqlite3_int64 ms = sqlite3_value_int64(argv[1]);
  pthread_mutex_lock(&w->mu);
  if (!w->keyed) {
    w->key = key;
    w->keyed = 1;
  }
  if (key != w->key) {
    pthread_mutex_unlock(&w->mu);
    sqlite3_result_error(ctx, "patina_deadline is reserved for the agent", -1);
    return;
  }
  int fired = w->fired;
  w->fired = 0;
  if (ms > 0) {
    w->deadline_ns = now_ns() + ms * 1000000;
    /* Wake the thread only if it would otherwise sleep past the new deadline. */
    if (w->wait_end_ns == 0 || w->wait_end_ns > w->deadline_ns) pthread_cond_signal(&w->wake);
  } else {
    w->deadline_ns = 0; /* the thread wakes at its wait's end, finds nothing armed, sleeps on */
  }
  pthread_mutex_unlock(&w->mu);
  sqlite3_result_int(ctx, fired);
}

/* The SQL function's destructor: runs when the connection closes (or the function is
 * replaced). Stops the thread and frees the state. */
static void watchdog_free(void *p) {
  Watchdog *w = p;
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_signal(&w->wake);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  pthread_cond_destroy(&w->wake);
  pthread_mutex_destroy(&w->mu);
  sqlite3_free(w);
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_patinadeadline_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
  SQLITE_EXTENSION_INIT2(pApi);
  Watchdog *w = sqlite3_malloc(sizeof *w);
  if (w == NULL) return SQLITE_NOMEM;
  memset(w, 0, sizeof *w);
  w->db = db;
  pthread_mutex_init(&w->mu, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
#ifndef __APPLE__
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
#endif
  pthread_cond_init(&w->wake, &attr);
  pthread_condattr_destroy(&attr);
  /* The thread takes no signals: they stay with the host's threads (Node handles SIGTERM). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int failed = pthread_create(&w->thread, NULL, watch, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (failed) {
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->mu);
    sqlite3_free(w);
    *pzErrMsg = sqlite3_mprintf("patina_deadline: cannot start its watchdog thread");
    return SQLITE_ERROR;
  }
  /* DIRECTONLY: not callable from triggers or views. On failure SQLite calls watchdog_free. */
  return sqlite3_create_function_v2(db, "patina_deadline", 2, SQLITE_UTF8 | SQLITE_DIRECTONLY, w,
                                    deadline_fn, NULL, NULL, watchdog_free);
}
