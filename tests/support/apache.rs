//! Apache httpd run on the host: a configuration of the test's own.

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A minimal Apache httpd configuration in `dir` (logs, pid file, `htdocs`): mpm_event
/// with small children (StartServers 1, ThreadsPerChild 4, ServerLimit 16), on
/// 127.0.0.1:`port` only, so that a load grows and shrinks the child set quickly.
pub fn apache_conf(dir: &std::path::Path, port: u16) -> String {
    let d = dir.display();
    let (user, group) = if std::fs::read_to_string("/etc/passwd").is_ok_and(|s| s.contains("\nwww-data:")) {
        ("www-data", "www-data")
    } else {
        ("nobody", "nogroup")
    };
    format!(
        "ServerRoot /etc/apache2
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {d}/httpd.pid
ErrorLog {d}/error.log
LogLevel info
DefaultRuntimeDir {d}
Mutex file:{d} default
User {user}
Group {group}
Timeout 5
StartServers 1
ThreadsPerChild 4
MinSpareThreads 4
MaxSpareThreads 12
ServerLimit 16
MaxRequestWorkers 64
DocumentRoot {d}/htdocs
DirectoryIndex index.html
<Directory {d}/htdocs>
  Require all granted
</Directory>
"
    )
}
