//! Table tests of the CRI -> Docker translation, one group per field family.

use super::*;

const SANDBOX: &str = "sandbox0123";

fn sandbox_ctx() -> SandboxContext {
    SandboxContext {
        sandbox_id: SANDBOX.into(),
        cgroup_parent: "/kubepods/burstable/pod1".into(),
        namespace_options: None,
        runtime: String::new(),
    }
}

/// This machine: everything but CAP_SYS_RESOURCE, negative oom_score_adj refused.
fn restricted_host() -> HostContext {
    HostContext {
        min_oom_score_adj: Some(0),
        daemon_capabilities: CAPABILITIES
            .iter()
            .filter(|c| **c != "CAP_SYS_RESOURCE")
            .map(|c| c.to_string())
            .collect(),
        cgroup_driver: "cgroupfs".into(),
        ..Default::default()
    }
}

fn full_host() -> HostContext {
    HostContext {
        daemon_capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        cgroup_driver: "cgroupfs".into(),
        ..Default::default()
    }
}

fn base() -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_sc(f: impl FnOnce(&mut cri::LinuxContainerSecurityContext)) -> cri::ContainerConfig {
    let mut sc = cri::LinuxContainerSecurityContext::default();
    f(&mut sc);
    let mut cfg = base();
    cfg.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(sc),
        ..Default::default()
    });
    cfg
}

fn with_res(f: impl FnOnce(&mut cri::LinuxContainerResources)) -> cri::ContainerConfig {
    let mut r = cri::LinuxContainerResources::default();
    f(&mut r);
    let mut cfg = base();
    cfg.linux = Some(cri::LinuxContainerConfig {
        resources: Some(r),
        ..Default::default()
    });
    cfg
}

fn convert(cfg: &cri::ContainerConfig, host: &HostContext) -> Result<ContainerSpec> {
    container_spec(cfg, "k8s_c", HashMap::new(), &sandbox_ctx(), host)
}

fn ok(cfg: &cri::ContainerConfig) -> ContainerSpec {
    convert(cfg, &restricted_host()).expect("translation")
}

fn err_kind(r: Result<ContainerSpec>) -> &'static str {
    match r {
        Err(Error::InvalidArgument(_)) => "invalid",
        Err(Error::Unimplemented(_)) => "unimplemented",
        Err(_) => "other error",
        Ok(_) => "ok",
    }
}

fn profile(t: cri::security_profile::ProfileType, r: &str) -> Option<cri::SecurityProfile> {
    Some(cri::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: r.into(),
    })
}

#[test]
fn basic_fields() {
    let mut cfg = base();
    cfg.command = vec!["/bin/sh".into()];
    cfg.args = vec!["-c".into(), "true".into()];
    cfg.working_dir = "/work".into();
    cfg.envs = vec![
        cri::KeyValue {
            key: "A".into(),
            value: "1".into(),
        },
        cri::KeyValue {
            key: "B".into(),
            value: "x=y".into(),
        },
    ];
    cfg.stdin = true;
    cfg.stdin_once = true;
    cfg.tty = true;
    let labels = HashMap::from([("l".to_string(), "v".to_string())]);
    let s = container_spec(
        &cfg,
        "k8s_c",
        labels.clone(),
        &sandbox_ctx(),
        &restricted_host(),
    )
    .expect("spec");
    assert_eq!(s.name, "k8s_c");
    assert_eq!(s.image, "busybox");
    assert_eq!(s.entrypoint, Some(vec!["/bin/sh".to_string()]));
    assert_eq!(s.cmd, Some(vec!["-c".to_string(), "true".to_string()]));
    assert_eq!(s.working_dir, "/work");
    assert_eq!(s.env, ["A=1", "B=x=y"]);
    assert_eq!(s.labels, labels);
    assert!(s.tty && s.open_stdin && s.stdin_once);
    assert_eq!(s.host.cgroup_parent, "/kubepods/burstable/pod1");
    assert_eq!(
        s.host.log_config,
        Some(crate::docker::LogConfig {
            driver: "json-file".into(),
            options: HashMap::new()
        })
    );

    // No command/args: the image's ENTRYPOINT/CMD stay.
    let s = ok(&base());
    assert_eq!((s.entrypoint, s.cmd), (None, None));
    // stdin_once without stdin means nothing.
    let mut c = base();
    c.stdin_once = true;
    assert!(!ok(&c).stdin_once);

    let cases: Vec<(&str, cri::ContainerConfig, &str)> = vec![
        ("no image", cri::ContainerConfig::default(), "invalid"),
        (
            "relative workdir",
            {
                let mut c = base();
                c.working_dir = "rel".into();
                c
            },
            "invalid",
        ),
        (
            "env without name",
            {
                let mut c = base();
                c.envs = vec![cri::KeyValue {
                    key: String::new(),
                    value: "v".into(),
                }];
                c
            },
            "invalid",
        ),
        (
            "env name with =",
            {
                let mut c = base();
                c.envs = vec![cri::KeyValue {
                    key: "A=B".into(),
                    value: "v".into(),
                }];
                c
            },
            "invalid",
        ),
        (
            "cdi",
            {
                let mut c = base();
                c.cdi_devices = vec![cri::CdiDevice {
                    name: "vendor.com/gpu=0".into(),
                }];
                c
            },
            "unimplemented",
        ),
    ];
    for (name, cfg, want) in cases {
        assert_eq!(err_kind(convert(&cfg, &restricted_host())), want, "{name}");
    }
    let empty_sandbox = SandboxContext::default();
    assert!(
        container_spec(
            &base(),
            "n",
            HashMap::new(),
            &empty_sandbox,
            &restricted_host()
        )
        .is_err()
    );
}

#[test]
fn mounts() {
    let m =
        |host: &str, ctr: &str, ro: bool, prop: cri::MountPropagation, relabel: bool| cri::Mount {
            container_path: ctr.into(),
            host_path: host.into(),
            readonly: ro,
            selinux_relabel: relabel,
            propagation: prop as i32,
            ..Default::default()
        };
    let mut cfg = base();
    cfg.mounts = vec![
        m(
            "/h/a",
            "/a",
            false,
            cri::MountPropagation::PropagationPrivate,
            false,
        ),
        m(
            "/h/b",
            "/b",
            true,
            cri::MountPropagation::PropagationHostToContainer,
            true,
        ),
        m(
            "/h/c",
            "/c",
            false,
            cri::MountPropagation::PropagationBidirectional,
            false,
        ),
    ];
    let s = ok(&cfg);
    assert_eq!(
        s.host.mounts,
        [
            MountSpec {
                source: "/h/a".into(),
                target: "/a".into(),
                read_only: false,
                propagation: Propagation::Private,
                selinux_relabel: false
            },
            MountSpec {
                source: "/h/b".into(),
                target: "/b".into(),
                read_only: true,
                propagation: Propagation::RSlave,
                selinux_relabel: true
            },
            MountSpec {
                source: "/h/c".into(),
                target: "/c".into(),
                read_only: false,
                propagation: Propagation::RShared,
                selinux_relabel: false
            },
        ]
    );
    let p = cri::MountPropagation::PropagationPrivate;
    let bad: Vec<(&str, cri::Mount, &str)> = vec![
        (
            "relative container path",
            m("/h", "rel", false, p, false),
            "invalid",
        ),
        ("empty host path", m("", "/a", false, p, false), "invalid"),
        (
            "relative host path",
            m("h", "/a", false, p, false),
            "invalid",
        ),
        (
            "bad propagation",
            cri::Mount {
                propagation: 7,
                ..m("/h", "/a", false, p, false)
            },
            "invalid",
        ),
        (
            "recursive ro",
            cri::Mount {
                recursive_read_only: true,
                ..m("/h", "/a", true, p, false)
            },
            "unimplemented",
        ),
        (
            "idmap",
            cri::Mount {
                uid_mappings: vec![cri::IdMapping {
                    host_id: 1,
                    container_id: 0,
                    length: 1,
                }],
                ..m("/h", "/a", false, p, false)
            },
            "unimplemented",
        ),
        (
            "image volume",
            cri::Mount {
                image: Some(cri::ImageSpec {
                    image: "img".into(),
                    ..Default::default()
                }),
                ..m("", "/a", false, p, false)
            },
            "unimplemented",
        ),
    ];
    for (name, mount, want) in bad {
        let mut cfg = base();
        cfg.mounts = vec![mount];
        assert_eq!(err_kind(convert(&cfg, &restricted_host())), want, "{name}");
    }
    let mut dup = base();
    dup.mounts = vec![
        m("/h/a", "/a", false, p, false),
        m("/h/b", "/a/", false, p, false),
    ];
    assert_eq!(err_kind(convert(&dup, &restricted_host())), "invalid");
}

#[test]
fn devices() {
    let d = |host: &str, ctr: &str, perms: &str| cri::Device {
        host_path: host.into(),
        container_path: ctr.into(),
        permissions: perms.into(),
    };
    let mut cfg = base();
    cfg.devices = vec![d("/dev/null", "/dev/mynull", "rw"), d("/dev/zero", "", "")];
    assert_eq!(
        ok(&cfg).host.devices,
        [
            DeviceSpec {
                path_on_host: "/dev/null".into(),
                path_in_container: "/dev/mynull".into(),
                cgroup_permissions: "rw".into()
            },
            DeviceSpec {
                path_on_host: "/dev/zero".into(),
                path_in_container: "/dev/zero".into(),
                cgroup_permissions: "rwm".into()
            },
        ]
    );
    for bad in [
        d("/dev/null", "/x", "rwx"),
        d("null", "/x", "r"),
        d("/dev/null", "x", "r"),
    ] {
        let mut cfg = base();
        cfg.devices = vec![bad.clone()];
        assert_eq!(
            err_kind(convert(&cfg, &restricted_host())),
            "invalid",
            "{bad:?}"
        );
    }
}

#[test]
fn resources() {
    let s = ok(&with_res(|r| {
        r.cpu_period = 100_000;
        r.cpu_quota = 50_000;
        r.cpu_shares = 512;
        r.memory_limit_in_bytes = 64 << 20;
        r.cpuset_cpus = "0".into();
        r.cpuset_mems = "0".into();
        r.oom_score_adj = 500;
        r.hugepage_limits = vec![cri::HugepageLimit {
            page_size: "2MB".into(),
            limit: 0,
        }];
    }));
    assert_eq!(
        s.host.resources,
        ResourceSpec {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory: 64 << 20,
            memory_swap: 64 << 20,
            cpuset_cpus: "0".into(),
            cpuset_mems: "0".into(),
            pids_limit: 0,
        }
    );
    assert_eq!(s.host.oom_score_adj, Some(500));

    // Explicit swap, unlimited swap.
    let swap = |m: i64, s: i64| {
        convert(
            &with_res(|r| {
                r.memory_limit_in_bytes = m;
                r.memory_swap_limit_in_bytes = s;
            }),
            &restricted_host(),
        )
    };
    assert_eq!(
        swap(100, 300).expect("swap").host.resources.memory_swap,
        300
    );
    assert_eq!(swap(100, -1).expect("swap").host.resources.memory_swap, -1);
    assert_eq!(err_kind(swap(100, 50)), "invalid");
    assert_eq!(err_kind(swap(0, 50)), "invalid");
    assert_eq!(err_kind(swap(100, -5)), "invalid");

    // oom_score_adj: clamped on a restricted host, as asked elsewhere; range checked.
    let oom = |v: i64, host: &HostContext| convert(&with_res(|r| r.oom_score_adj = v), host);
    assert_eq!(
        oom(-997, &restricted_host())
            .expect("oom")
            .host
            .oom_score_adj,
        Some(0)
    );
    assert_eq!(
        oom(-997, &full_host()).expect("oom").host.oom_score_adj,
        Some(-997)
    );
    assert_eq!(oom(0, &full_host()).expect("oom").host.oom_score_adj, None);
    assert_eq!(err_kind(oom(1001, &full_host())), "invalid");

    let cases: Vec<(&str, cri::ContainerConfig, &str)> = vec![
        ("negative cpu", with_res(|r| r.cpu_quota = -5), "invalid"),
        (
            "negative memory",
            with_res(|r| r.memory_limit_in_bytes = -5),
            "invalid",
        ),
        (
            "hugepages",
            with_res(|r| {
                r.hugepage_limits = vec![cri::HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 2 << 20,
                }]
            }),
            "unimplemented",
        ),
        (
            "unified on v1",
            with_res(|r| {
                r.unified.insert("memory.high".into(), "1000".into());
            }),
            "invalid",
        ),
    ];
    for (name, cfg, want) in cases {
        assert_eq!(err_kind(convert(&cfg, &restricted_host())), want, "{name}");
    }

    // cgroup v2: the files Docker has fields for are mapped, others refused.
    let v2 = HostContext {
        cgroup_v2: true,
        ..restricted_host()
    };
    let s = convert(
        &with_res(|r| {
            r.unified.insert("memory.max".into(), "1048576".into());
            r.unified.insert("pids.max".into(), "20".into());
            r.unified.insert("cpuset.cpus".into(), "0-1".into());
        }),
        &v2,
    )
    .expect("unified");
    assert_eq!(
        (s.host.resources.memory, s.host.resources.pids_limit),
        (1048576, 20)
    );
    assert_eq!(s.host.resources.cpuset_cpus, "0-1");
    let r = convert(
        &with_res(|r| {
            r.unified.insert("memory.high".into(), "1".into());
        }),
        &v2,
    );
    assert_eq!(err_kind(r), "unimplemented");
    let r = convert(
        &with_res(|r| {
            r.unified.insert("pids.max".into(), "lots".into());
        }),
        &v2,
    );
    assert_eq!(err_kind(r), "invalid");
}

#[test]
fn users_and_groups() {
    let table: Vec<(&str, cri::ContainerConfig, &str, Vec<&str>)> = vec![
        ("none", with_sc(|_| {}), "", vec![]),
        (
            "uid",
            with_sc(|s| s.run_as_user = Some(cri::Int64Value { value: 1234 })),
            "1234",
            vec![],
        ),
        (
            "uid 0",
            with_sc(|s| s.run_as_user = Some(cri::Int64Value { value: 0 })),
            "0",
            vec![],
        ),
        (
            "uid:gid",
            with_sc(|s| {
                s.run_as_user = Some(cri::Int64Value { value: 1234 });
                s.run_as_group = Some(cri::Int64Value { value: 5678 });
            }),
            "1234:5678",
            vec![],
        ),
        (
            "name wins",
            with_sc(|s| {
                s.run_as_user = Some(cri::Int64Value { value: 1 });
                s.run_as_username = "tester".into();
            }),
            "tester",
            vec![],
        ),
        (
            "name:gid",
            with_sc(|s| {
                s.run_as_username = "tester".into();
                s.run_as_group = Some(cri::Int64Value { value: 4000 });
            }),
            "tester:4000",
            vec![],
        ),
        (
            "groups",
            with_sc(|s| s.supplemental_groups = vec![4000, 5678]),
            "",
            vec!["4000", "5678"],
        ),
    ];
    for (name, cfg, user, groups) in table {
        let s = ok(&cfg);
        assert_eq!(s.user, user, "{name}");
        assert_eq!(s.host.group_add, groups, "{name}");
    }
    let bad: Vec<(&str, cri::ContainerConfig, &str)> = vec![
        (
            "group without user",
            with_sc(|s| s.run_as_group = Some(cri::Int64Value { value: 1 })),
            "invalid",
        ),
        (
            "negative uid",
            with_sc(|s| s.run_as_user = Some(cri::Int64Value { value: -1 })),
            "invalid",
        ),
        (
            "negative gid",
            with_sc(|s| s.supplemental_groups = vec![-3]),
            "invalid",
        ),
        (
            "strict groups",
            with_sc(|s| {
                s.supplemental_groups_policy = cri::SupplementalGroupsPolicy::Strict as i32
            }),
            "unimplemented",
        ),
    ];
    for (name, cfg, want) in bad {
        assert_eq!(err_kind(convert(&cfg, &restricted_host())), want, "{name}");
    }
}

#[test]
fn capabilities() {
    let caps = |add: &[&str], drop: &[&str]| {
        with_sc(|s| {
            s.capabilities = Some(cri::Capability {
                add_capabilities: add.iter().map(|c| c.to_string()).collect(),
                drop_capabilities: drop.iter().map(|c| c.to_string()).collect(),
                add_ambient_capabilities: vec![],
            })
        })
    };
    let s = ok(&caps(
        &["NET_ADMIN", "cap_sys_time"],
        &["chown", "CAP_KILL"],
    ));
    assert_eq!(s.host.cap_add, ["CAP_NET_ADMIN", "CAP_SYS_TIME"]);
    assert_eq!(s.host.cap_drop, ["CAP_CHOWN", "CAP_KILL"]);
    assert!(!s.host.privileged);

    // ALL: Docker's ALL where the host has everything, the daemon's set (as Docker knows it)
    // where it does not.
    let s = convert(&caps(&["ALL"], &[]), &full_host()).expect("all");
    assert_eq!(s.host.cap_add, ["ALL"]);
    let s = ok(&caps(&["ALL"], &["ALL"]));
    assert_eq!(s.host.cap_add.len(), 37);
    assert!(!s.host.cap_add.contains(&"CAP_SYS_RESOURCE".to_string()));
    assert!(!s.host.cap_add.contains(&"CAP_BPF".to_string()));
    assert_eq!(s.host.cap_drop, ["ALL"]);

    assert_eq!(
        err_kind(convert(&caps(&["SYS_RESOURCE"], &[]), &restricted_host())),
        "invalid"
    );
    assert_eq!(
        convert(&caps(&["SYS_RESOURCE"], &[]), &full_host())
            .expect("full")
            .host
            .cap_add,
        ["CAP_SYS_RESOURCE"]
    );
    assert_eq!(
        err_kind(convert(&caps(&["NOT_A_CAP"], &[]), &full_host())),
        "invalid"
    );
    assert_eq!(
        err_kind(convert(&caps(&[], &["BOGUS"]), &full_host())),
        "invalid"
    );
    let ambient = with_sc(|s| {
        s.capabilities = Some(cri::Capability {
            add_ambient_capabilities: vec!["NET_RAW".into()],
            ..Default::default()
        })
    });
    assert_eq!(err_kind(convert(&ambient, &full_host())), "unimplemented");
}

#[test]
fn privileged() {
    let cfg = with_sc(|s| {
        s.privileged = true;
        s.masked_paths = vec!["/proc/kcore".into()];
        s.readonly_paths = vec!["/proc/sys".into()];
        s.capabilities = Some(cri::Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
    });
    // A host with the full bounding set: Docker's own privileged mode.
    let s = convert(&cfg, &full_host()).expect("privileged");
    assert!(s.host.privileged);
    assert!(s.host.cap_add.is_empty() && s.host.cap_drop.is_empty());
    assert!(s.host.security_opt.is_empty());
    assert_eq!(
        (s.host.masked_paths.clone(), s.host.readonly_paths.clone()),
        (None, None)
    );

    // This host: emulated.
    let s = ok(&cfg);
    assert!(!s.host.privileged);
    assert_eq!(s.host.cap_add.len(), 37);
    assert!(s.host.cap_drop.is_empty());
    assert_eq!(
        s.host.security_opt,
        ["seccomp=unconfined", "apparmor=unconfined", "label=disable"]
    );
    assert_eq!(s.host.masked_paths, Some(vec![]));
    assert_eq!(s.host.readonly_paths, Some(vec![]));
}

#[test]
fn security_options() {
    use cri::security_profile::ProfileType as P;
    let host = HostContext {
        seccomp_profiles: HashMap::from([("/p/s.json".to_string(), "{\"a\":1}".to_string())]),
        ..restricted_host()
    };
    let table: Vec<(&str, cri::ContainerConfig, Vec<&str>)> = vec![
        (
            "nothing: unconfined as kubelet means it",
            with_sc(|_| {}),
            vec!["seccomp=unconfined"],
        ),
        (
            "runtime default",
            with_sc(|s| s.seccomp = profile(P::RuntimeDefault, "")),
            vec![],
        ),
        (
            "unconfined",
            with_sc(|s| s.seccomp = profile(P::Unconfined, "")),
            vec!["seccomp=unconfined"],
        ),
        (
            "localhost",
            with_sc(|s| s.seccomp = profile(P::Localhost, "/p/s.json")),
            vec!["seccomp={\"a\":1}"],
        ),
        (
            "deprecated default",
            with_sc(|s| s.seccomp_profile_path = "runtime/default".into()),
            vec![],
        ),
        (
            "deprecated docker default",
            with_sc(|s| s.seccomp_profile_path = "docker/default".into()),
            vec![],
        ),
        (
            "deprecated unconfined",
            with_sc(|s| s.seccomp_profile_path = "unconfined".into()),
            vec!["seccomp=unconfined"],
        ),
        (
            "deprecated localhost",
            with_sc(|s| s.seccomp_profile_path = "localhost//p/s.json".into()),
            vec!["seccomp={\"a\":1}"],
        ),
        (
            "new field wins",
            with_sc(|s| {
                s.seccomp = profile(P::RuntimeDefault, "");
                s.seccomp_profile_path = "unconfined".into();
            }),
            vec![],
        ),
        (
            "apparmor unconfined",
            with_sc(|s| {
                s.seccomp = profile(P::RuntimeDefault, "");
                s.apparmor = profile(P::Unconfined, "");
            }),
            vec!["apparmor=unconfined"],
        ),
        (
            "apparmor localhost",
            with_sc(|s| {
                s.seccomp = profile(P::RuntimeDefault, "");
                s.apparmor = profile(P::Localhost, "k8s-deny-write");
            }),
            vec!["apparmor=k8s-deny-write"],
        ),
        (
            "apparmor deprecated",
            with_sc(|s| {
                s.seccomp = profile(P::RuntimeDefault, "");
                s.apparmor_profile = "localhost/my-prof".into();
            }),
            vec!["apparmor=my-prof"],
        ),
        (
            "apparmor deprecated default",
            with_sc(|s| {
                s.seccomp = profile(P::RuntimeDefault, "");
                s.apparmor_profile = "runtime/default".into();
            }),
            vec![],
        ),
        (
            "selinux",
            with_sc(|s| {
                s.seccomp = profile(P::RuntimeDefault, "");
                s.selinux_options = Some(cri::SeLinuxOption {
                    user: "system_u".into(),
                    role: "system_r".into(),
                    r#type: "container_t".into(),
                    level: "s0:c1,c2".into(),
                });
            }),
            vec![
                "label=user:system_u",
                "label=role:system_r",
                "label=type:container_t",
                "label=level:s0:c1,c2",
            ],
        ),
        (
            "no new privs",
            with_sc(|s| {
                s.seccomp = profile(P::RuntimeDefault, "");
                s.no_new_privs = true;
            }),
            vec!["no-new-privileges"],
        ),
    ];
    for (name, cfg, want) in table {
        let s = convert(&cfg, &host).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.host.security_opt, want, "{name}");
    }
    let bad: Vec<(&str, cri::ContainerConfig)> = vec![
        (
            "profile not loaded",
            with_sc(|s| s.seccomp = profile(P::Localhost, "/other.json")),
        ),
        (
            "relative profile",
            with_sc(|s| s.seccomp = profile(P::Localhost, "rel.json")),
        ),
        (
            "empty localhost ref",
            with_sc(|s| s.apparmor = profile(P::Localhost, "")),
        ),
        (
            "unknown type",
            with_sc(|s| {
                s.seccomp = Some(cri::SecurityProfile {
                    profile_type: 9,
                    localhost_ref: String::new(),
                })
            }),
        ),
        (
            "bad deprecated",
            with_sc(|s| s.seccomp_profile_path = "whatever".into()),
        ),
        (
            "bad deprecated apparmor",
            with_sc(|s| s.apparmor_profile = "whatever".into()),
        ),
        (
            "relative masked path",
            with_sc(|s| s.masked_paths = vec!["proc".into()]),
        ),
    ];
    for (name, cfg) in bad {
        assert_eq!(err_kind(convert(&cfg, &host)), "invalid", "{name}");
    }
}

#[test]
fn rootfs_and_paths() {
    let s = ok(&with_sc(|s| {
        s.readonly_rootfs = true;
        s.masked_paths = vec!["/proc/kcore".into(), "/etc/secret".into()];
        s.readonly_paths = vec!["/proc/sys".into()];
    }));
    assert!(s.host.readonly_rootfs);
    assert_eq!(
        s.host.masked_paths,
        Some(vec!["/proc/kcore".to_string(), "/etc/secret".to_string()])
    );
    assert_eq!(s.host.readonly_paths, Some(vec!["/proc/sys".to_string()]));
    // Empty lists keep Docker's defaults.
    let s = ok(&with_sc(|_| {}));
    assert!(!s.host.readonly_rootfs);
    assert_eq!((s.host.masked_paths, s.host.readonly_paths), (None, None));
}

#[test]
fn container_namespaces() {
    use cri::NamespaceMode as M;
    let ns = |net: M, pid: M, ipc: M, target: &str| {
        with_sc(|s| {
            s.namespace_options = Some(cri::NamespaceOption {
                network: net as i32,
                pid: pid as i32,
                ipc: ipc as i32,
                target_id: target.into(),
                userns_options: None,
            })
        })
    };
    let join = format!("container:{SANDBOX}");
    let table = [
        (
            ns(M::Pod, M::Container, M::Pod, ""),
            [join.as_str(), "", join.as_str(), ""],
        ),
        (
            ns(M::Pod, M::Pod, M::Pod, ""),
            [join.as_str(), join.as_str(), join.as_str(), ""],
        ),
        (
            ns(M::Node, M::Node, M::Node, ""),
            [join.as_str(), "host", "host", "host"],
        ),
        (
            ns(M::Pod, M::Target, M::Pod, "tgt"),
            [join.as_str(), "container:tgt", join.as_str(), ""],
        ),
    ];
    for (cfg, [net, pid, ipc, uts]) in table {
        let s = ok(&cfg);
        assert_eq!(
            [
                s.host.network_mode.as_str(),
                s.host.pid_mode.as_str(),
                s.host.ipc_mode.as_str(),
                s.host.uts_mode.as_str()
            ],
            [net, pid, ipc, uts]
        );
    }
    // No namespace options at all: the sandbox's, and POD defaults.
    let s = ok(&base());
    assert_eq!(
        (s.host.network_mode.as_str(), s.host.pid_mode.as_str()),
        (join.as_str(), join.as_str())
    );
    let mut ctx = sandbox_ctx();
    ctx.namespace_options = Some(cri::NamespaceOption {
        pid: M::Container as i32,
        ..Default::default()
    });
    let s = container_spec(&base(), "n", HashMap::new(), &ctx, &restricted_host()).expect("spec");
    assert_eq!(s.host.pid_mode, "");

    for bad in [
        ns(M::Container, M::Pod, M::Pod, ""),
        ns(M::Pod, M::Target, M::Pod, ""),
        ns(M::Pod, M::Pod, M::Container, ""),
    ] {
        assert_eq!(err_kind(convert(&bad, &restricted_host())), "invalid");
    }
    let userns = with_sc(|s| {
        s.namespace_options = Some(cri::NamespaceOption {
            userns_options: Some(cri::UserNamespace {
                mode: M::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    assert_eq!(
        err_kind(convert(&userns, &restricted_host())),
        "unimplemented"
    );
}

#[test]
fn cgroup_parents() {
    let table = [
        ("", "systemd", Ok("")),
        (
            "/kubepods/burstable/pod1",
            "cgroupfs",
            Ok("/kubepods/burstable/pod1"),
        ),
        (
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
            "systemd",
            Ok("kubepods-burstable-pod1.slice"),
        ),
        ("kubepods-pod1.slice", "systemd", Ok("kubepods-pod1.slice")),
        (
            "/kubepods/burstable/pod-1",
            "systemd",
            Ok("kubepods-burstable-pod_1.slice"),
        ),
        ("/", "systemd", Err(())),
    ];
    for (parent, driver, want) in table {
        let got = cgroup_parent(parent, driver).map_err(|_| ());
        assert_eq!(got.as_deref().map_err(|_| ()), want, "{parent} {driver}");
    }
    let host = HostContext {
        cgroup_driver: "systemd".into(),
        ..restricted_host()
    };
    let mut ctx = sandbox_ctx();
    ctx.cgroup_parent = "/kubepods.slice/kubepods-pod2.slice".into();
    let s = container_spec(&base(), "n", HashMap::new(), &ctx, &host).expect("spec");
    assert_eq!(s.host.cgroup_parent, "kubepods-pod2.slice");
}

fn sandbox_cfg() -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "p".into(),
            uid: "u".into(),
            namespace: "ns".into(),
            attempt: 0,
        }),
        hostname: "podhost".into(),
        ..Default::default()
    }
}

fn sandbox(cfg: &cri::PodSandboxConfig, host: &HostContext) -> Result<ContainerSpec> {
    sandbox_spec(cfg, "k8s_POD", "pause:1", HashMap::new(), "runc", host)
}

fn with_linux(f: impl FnOnce(&mut cri::LinuxPodSandboxConfig)) -> cri::PodSandboxConfig {
    let mut l = cri::LinuxPodSandboxConfig::default();
    f(&mut l);
    let mut cfg = sandbox_cfg();
    cfg.linux = Some(l);
    cfg
}

fn sandbox_ns(
    net: cri::NamespaceMode,
    pid: cri::NamespaceMode,
    ipc: cri::NamespaceMode,
) -> cri::PodSandboxConfig {
    with_linux(|l| {
        l.security_context = Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: net as i32,
                pid: pid as i32,
                ipc: ipc as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
    })
}

#[test]
fn sandbox_basics() {
    let mut cfg = sandbox_cfg();
    cfg.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.0.0.10".into()],
        searches: vec!["ns.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    cfg.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Udp as i32,
        container_port: 53,
        host_port: 5353,
        host_ip: "127.0.0.1".into(),
    }];
    let s = sandbox(&cfg, &restricted_host()).expect("sandbox");
    assert_eq!(
        (s.name.as_str(), s.image.as_str(), s.hostname.as_str()),
        ("k8s_POD", "pause:1", "podhost")
    );
    assert_eq!(s.host.network_mode, "none");
    assert_eq!(s.host.ipc_mode, "shareable");
    assert_eq!(s.host.pid_mode, "");
    assert_eq!(s.host.runtime, "runc");
    assert_eq!(s.host.dns, ["10.0.0.10"]);
    assert_eq!(s.host.dns_search, ["ns.svc.cluster.local"]);
    assert_eq!(s.host.dns_options, ["ndots:5"]);
    assert!(
        s.host.port_bindings.is_empty(),
        "ports belong to the network plugin"
    );
    assert_eq!(s.host.resources.cpu_shares, SANDBOX_CPU_SHARES);
    assert_eq!(s.host.oom_score_adj, Some(0), "clamped on this host");
    assert_eq!(
        s.host.security_opt,
        ["seccomp=unconfined", "no-new-privileges"]
    );

    let s = sandbox(&cfg, &full_host()).expect("sandbox");
    assert_eq!(s.host.oom_score_adj, Some(-998));

    // The no-op plugin: Docker's bridge publishes the ports.
    let bridge = HostContext {
        docker_bridge: true,
        ..full_host()
    };
    let s = sandbox(&cfg, &bridge).expect("sandbox");
    assert_eq!(s.host.network_mode, "default");
    assert_eq!(
        s.host.port_bindings,
        [PortBinding {
            container_port: 53,
            protocol: "udp".into(),
            host_ip: "127.0.0.1".into(),
            host_port: 5353
        }]
    );
    let mut badport = cfg.clone();
    badport.port_mappings[0].container_port = 70000;
    assert!(matches!(
        sandbox(&badport, &bridge),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn sandbox_namespaces() {
    use cri::NamespaceMode as M;
    let table = [
        (
            sandbox_ns(M::Pod, M::Pod, M::Pod),
            ["none", "", "shareable", ""],
            "podhost",
        ),
        (
            sandbox_ns(M::Pod, M::Container, M::Pod),
            ["none", "", "shareable", ""],
            "podhost",
        ),
        (
            sandbox_ns(M::Node, M::Node, M::Node),
            ["host", "host", "host", "host"],
            "",
        ),
    ];
    for (cfg, [net, pid, ipc, uts], hostname) in table {
        let s = sandbox(&cfg, &restricted_host()).expect("sandbox");
        assert_eq!(
            [
                s.host.network_mode.as_str(),
                s.host.pid_mode.as_str(),
                s.host.ipc_mode.as_str(),
                s.host.uts_mode.as_str()
            ],
            [net, pid, ipc, uts]
        );
        assert_eq!(s.hostname, hostname);
    }
    for bad in [
        sandbox_ns(M::Container, M::Pod, M::Pod),
        sandbox_ns(M::Pod, M::Pod, M::Target),
        sandbox_ns(M::Pod, M::Target, M::Pod),
    ] {
        assert!(matches!(
            sandbox(&bad, &restricted_host()),
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[test]
fn sandbox_sysctls() {
    use cri::NamespaceMode as M;
    let with = |ns: cri::PodSandboxConfig, k: &str| {
        let mut cfg = ns;
        if let Some(l) = cfg.linux.as_mut() {
            l.sysctls.insert(k.into(), "1".into());
        }
        sandbox(&cfg, &restricted_host())
    };
    let pod = || sandbox_ns(M::Pod, M::Pod, M::Pod);
    let hostnet = || sandbox_ns(M::Node, M::Pod, M::Pod);
    let hostipc = || sandbox_ns(M::Pod, M::Pod, M::Node);
    let s = with(pod(), "net.ipv4.ip_unprivileged_port_start").expect("net");
    assert_eq!(
        s.host
            .sysctls
            .get("net.ipv4.ip_unprivileged_port_start")
            .map(String::as_str),
        Some("1")
    );
    let s = with(pod(), "net/ipv4/conf/eth0.100/forwarding").expect("slashes");
    assert!(
        s.host
            .sysctls
            .contains_key("net.ipv4.conf.eth0/100.forwarding")
    );
    assert!(with(pod(), "kernel.shm_rmid_forced").is_ok());
    assert!(with(pod(), "fs.mqueue.msg_max").is_ok());
    assert!(with(hostnet(), "kernel.msgmax").is_ok());
    let bad = [
        (pod(), "kernel.panic"),
        (pod(), "vm.swappiness"),
        (hostnet(), "net.ipv4.ip_forward"),
        (hostipc(), "kernel.sem"),
    ];
    for (cfg, k) in bad {
        assert!(
            matches!(with(cfg, k), Err(Error::InvalidArgument(_))),
            "{k}"
        );
    }
}

#[test]
fn sandbox_security_and_cgroups() {
    use cri::security_profile::ProfileType as P;
    let cfg = with_linux(|l| {
        l.cgroup_parent =
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9.slice".into();
        l.security_context = Some(cri::LinuxSandboxSecurityContext {
            run_as_user: Some(cri::Int64Value { value: 65534 }),
            run_as_group: Some(cri::Int64Value { value: 65534 }),
            supplemental_groups: vec![4000],
            readonly_rootfs: true,
            seccomp: profile(P::RuntimeDefault, ""),
            selinux_options: Some(cri::SeLinuxOption {
                level: "s0:c5".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        l.overhead = Some(cri::LinuxContainerResources {
            cpu_shares: 100,
            ..Default::default()
        });
    });
    let host = HostContext {
        cgroup_driver: "systemd".into(),
        ..restricted_host()
    };
    let s = sandbox(&cfg, &host).expect("sandbox");
    assert_eq!(s.user, "65534:65534");
    assert_eq!(s.host.group_add, ["4000"]);
    assert!(s.host.readonly_rootfs);
    assert_eq!(s.host.cgroup_parent, "kubepods-besteffort-pod9.slice");
    assert_eq!(
        s.host.security_opt,
        ["label=level:s0:c5", "no-new-privileges"]
    );

    let privileged = with_linux(|l| {
        l.security_context = Some(cri::LinuxSandboxSecurityContext {
            privileged: true,
            ..Default::default()
        });
    });
    let s = sandbox(&privileged, &restricted_host()).expect("privileged sandbox");
    assert!(!s.host.privileged);
    assert_eq!(
        s.host.security_opt,
        ["seccomp=unconfined", "apparmor=unconfined", "label=disable"]
    );
    let s = sandbox(&privileged, &full_host()).expect("privileged sandbox");
    assert!(s.host.privileged);

    let bad = with_linux(|l| {
        l.security_context = Some(cri::LinuxSandboxSecurityContext {
            run_as_group: Some(cri::Int64Value { value: 1 }),
            ..Default::default()
        });
    });
    assert!(matches!(
        sandbox(&bad, &restricted_host()),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn capability_names() {
    assert_eq!(
        capability_name("net_admin").as_deref(),
        Some("CAP_NET_ADMIN")
    );
    assert_eq!(capability_name("CAP_CHOWN").as_deref(), Some("CAP_CHOWN"));
    assert_eq!(capability_name("all").as_deref(), Some("ALL"));
    assert_eq!(capability_name("NOPE"), None);
}

#[test]
fn protocol_names() {
    for (protocol, want) in [
        (cri::Protocol::Tcp as i32, Some("tcp")),
        (cri::Protocol::Udp as i32, Some("udp")),
        (cri::Protocol::Sctp as i32, Some("sctp")),
        (3, None),
        (-1, None),
    ] {
        assert_eq!(protocol_name(protocol), want, "{protocol}");
    }
}
