/* eds-gateway: command line, configuration, then the server. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eds_conf.h"
#include "eds_log.h"
#include "eds_passwd.h"
#include "eds_tls.h"
#include "gw_config.h"
#include "gw_schemas.h"
#include "gw_server.h"

#ifndef EDS_VERSION
#define EDS_VERSION "dev"
#endif

static void usage(FILE *out, const gw_config *defaults)
{
    fprintf(out,
            "Usage: eds-gateway [-c FILE] [--OPTION VALUE]... [--check] [-v]\n"
            "\n"
            "Accepts eds-agent connections (protocol v1, newline-delimited JSON over TCP),\n"
            "validates each record against its schema and publishes it to MQTT as\n"
            "PREFIX/<device>/data; acks the agent once the broker has it.\n"
            "\n"
            "  -c, --config FILE  read options from FILE (mosquitto.conf style: `option value`)\n"
            "      --check        check the configuration and the files it names, then exit\n"
            "  -v, --verbose      log at level info (twice: debug)\n"
            "  -h, --help         this text\n"
            "      --version      print the version\n"
            "\n"
            "Every option below can be given in the file or as --option VALUE (flags win).\n"
            "Examples (the paths the eds-gateway package installs):\n"
            "  eds-gateway -c /etc/eds/eds-gateway.conf --check\n"
            "  eds-gateway --listener 5883 127.0.0.1 --state-dir /var/lib/eds-gateway \\\n"
            "              --schema /usr/share/eds/schemas/energy.json \\\n"
            "              --password-file /etc/eds/devices.passwd\n"
            "\n"
            "Options:\n");
    eds_conf_print_help(out, gw_config_options(), defaults);
    fprintf(out,
            "\nExit status: 0 after a clean stop (SIGTERM/SIGINT); 2 on a configuration error,\n"
            "which includes a file the configuration names that is missing or unreadable\n"
            "(every start checks what --check checks); 1 on other errors.\n"
            "SIGHUP reloads the schemas, the password file and the TLS certificates.\n");
}

/* --check: every file the configuration names must load. */
static int check_files(const gw_config *cfg, eds_error *err)
{
    gw_schemas *schemas = NULL;
    int rc = gw_schemas_load(cfg, &schemas, err);
    gw_schemas_destroy(schemas);
    if (rc != EDS_OK)
        return rc;
    if (cfg->password_file) {
        eds_passwd *pw = NULL;
        rc = eds_passwd_load(cfg->password_file, &pw, err);
        if (rc == EDS_OK && eds_passwd_world_readable(cfg->password_file))
            fprintf(stderr, "eds-gateway: warning: %s is readable by every user\n",
                    cfg->password_file);
        eds_passwd_destroy(pw);
        if (rc != EDS_OK)
            return rc;
    }
    bool tls = false;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        tls |= cfg->listeners[i].tls;
    if (tls) { /* certificate, key and CA load as the server would load them */
        eds_tls_server_opts o = {cfg->certfile, cfg->keyfile, cfg->cafile,
                                 cfg->require_certificate};
        eds_tls_ctx *ctx = NULL;
        rc = eds_tls_server_ctx_create(&o, &ctx, err);
        eds_tls_ctx_destroy(ctx);
        if (rc != EDS_OK)
            return rc;
    }
    if (cfg->broker_password_file && access(cfg->broker_password_file, R_OK) != 0)
        return eds_error_set(err, EDS_ERR_IO, "broker_password_file %s: %s",
                             cfg->broker_password_file, strerror(errno));
    /* state_dir must be writable, or creatable: then its parent must be. */
    if (access(cfg->state_dir, W_OK | X_OK) != 0) {
        int saved = errno;
        char parent[4096];
        snprintf(parent, sizeof(parent), "%s", cfg->state_dir);
        char *slash = strrchr(parent, '/');
        if (slash == parent)
            slash[1] = '\0';
        else if (slash)
            *slash = '\0';
        else
            snprintf(parent, sizeof(parent), ".");
        if (saved != ENOENT || access(parent, W_OK | X_OK) != 0)
            return eds_error_set(err, EDS_ERR_IO, "state_dir %s: %s", cfg->state_dir,
                                 strerror(saved == ENOENT ? errno : saved));
    }
    return EDS_OK;
}

int main(int argc, char **argv)
{
    gw_config cfg;
    const char *config_path = NULL;
    int verbose = 0, check = 0;
    eds_error err;
    eds_error_clear(&err);

    /* First pass: -c, --help and friends; the file is read before the flags. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            gw_config defaults;
            gw_config_init(&defaults);
            usage(stdout, &defaults);
            gw_config_free(&defaults);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("eds-gateway %s\n", EDS_VERSION);
            return 0;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (++i >= argc) {
                fprintf(stderr, "eds-gateway: %s needs a FILE\n", a);
                return 2;
            }
            config_path = argv[i];
        }
    }
    gw_config_init(&cfg); /* owns its strings from here: every exit frees it */
    if (config_path && eds_conf_load_file(config_path, gw_config_options(), &cfg, &err) != EDS_OK) {
        fprintf(stderr, "eds-gateway: %s\n", err.msg);
        gw_config_free(&cfg);
        return 2;
    }
    /* The program's own flags, then the option table's (eds_conf_set_arg). */
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            i += 2;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose++;
            i++;
        } else if (!strcmp(a, "-vv")) {
            verbose += 2;
            i++;
        } else if (!strcmp(a, "--check")) {
            check = 1;
            i++;
        } else if (eds_conf_set_arg(gw_config_options(), &cfg, argc, argv, &i, &err) != EDS_OK) {
            fprintf(stderr, "eds-gateway: %s (see --help)\n", err.msg);
            gw_config_free(&cfg);
            return 2;
        }
    }
    if (gw_config_finish(&cfg, &err) != EDS_OK) {
        fprintf(stderr, "eds-gateway: %s%s%s\n", config_path ? config_path : "",
                config_path ? ": " : "", err.msg);
        gw_config_free(&cfg);
        return 2;
    }
    enum eds_log_level level = EDS_LOG_NOTICE;
    if (eds_log_level_parse(cfg.log_level, &level) != 0) {
        fprintf(stderr,
                "eds-gateway: log_level: '%s' is not one of error, warning, notice, "
                "info, debug\n",
                cfg.log_level);
        gw_config_free(&cfg);
        return 2;
    }
    if (verbose)
        level = verbose > 1 ? EDS_LOG_DEBUG : EDS_LOG_INFO;
    eds_log_init("eds-gateway", level);

    /* The start-up guard: a start runs the same checks as --check, and a
     * failure is a configuration error (exit 2), which the systemd unit's
     * RestartPreventExitStatus=2 does not restart. (An ExecStartPre=
     * --check cannot do this: systemd restarts a unit whose ExecStartPre
     * failed whatever its status.) */
    int rc = check_files(&cfg, &err);
    if (check || rc != EDS_OK) {
        if (rc != EDS_OK && check)
            fprintf(stderr, "eds-gateway: %s\n", err.msg);
        else if (rc != EDS_OK)
            eds_log_error("%s (exit 2: configuration error, see --check)", err.msg);
        else
            printf("eds-gateway: configuration OK\n");
        gw_config_free(&cfg);
        return rc == EDS_OK ? 0 : 2;
    }

    gw_server *server = NULL;
    rc = gw_server_create(&cfg, &server, &err);
    if (rc != EDS_OK) {
        eds_log_error("%s", err.msg[0] ? err.msg : eds_strerror(rc));
        gw_config_free(&cfg);
        return rc == EDS_ERR_CONFIG || rc == EDS_ERR_SCHEMA ? 2 : 1;
    }
    rc = gw_server_run(server);
    gw_server_destroy(server);
    gw_config_free(&cfg);
    return rc == EDS_OK ? 0 : 1;
}
