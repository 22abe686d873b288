//! Loader and typed API over the XDP data plane.
//!
//! The programs, maps and links live pinned under one bpffs directory, so
//! forwarding goes on while no daemon runs; a later start re-opens the pins
//! instead of loading anew.
//!
//! Layout of a pin directory:
//! - `prog_uplink`, `prog_attach`: the two XDP programs
//! - `map_<NAME>`: every map (global counters, session tables, commands)
//! - `link_<ifname>`: one bpf_link per attached interface

mod batch;
mod iface;
mod mapped;
mod params;
pub mod session;
pub use iface::{enable_forwarding, forwarding_enabled, hwaddr, ifindex, mtu, validate_ifname};
pub mod trace;

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, Map, MapData, PerCpuArray},
    programs::{links::FdLink, links::PinnedLink, ProgramError, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use l2tp_common::{
    session::{
        DataplaneConfig, MAP_ATTACH_PORT, MAP_DP_CONFIG, MAP_PORT_SLOTS, MAP_SESSION_BY_ATTACH, MAP_SESSION_BY_ID,
        MAP_SESSION_CFG, MAP_SESSION_NEXT_HOP, MAP_SESSION_RX_CMD, MAP_SESSION_RX_STATE, MAP_SESSION_STATS,
        MAP_SESSION_TX_CMD, MAP_SESSION_TX_STATE, MAP_TRACE_CFG, MAP_TX_PORTS, PROG_ATTACH, PROG_UPLINK,
    },
    GlobalCounter, MAP_GLOBAL_STATS,
};

pub use session::{Cookie, Encap, RxMode, SessionParams, SessionTable};

/// The release build of `l2tp-ebpf`, built by `build.rs`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/l2tp-ebpf"));

/// Default bpffs directory for the pins.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/l2tp";

/// Every map of the object, pinned as `map_<name>`.
pub const MAPS: [&str; 15] = [
    MAP_GLOBAL_STATS,
    MAP_ATTACH_PORT,
    MAP_SESSION_BY_ID,
    MAP_SESSION_BY_ATTACH,
    MAP_SESSION_CFG,
    MAP_SESSION_RX_STATE,
    MAP_SESSION_TX_STATE,
    MAP_SESSION_RX_CMD,
    MAP_SESSION_TX_CMD,
    MAP_SESSION_STATS,
    MAP_TX_PORTS,
    MAP_PORT_SLOTS,
    MAP_SESSION_NEXT_HOP,
    MAP_DP_CONFIG,
    MAP_TRACE_CFG,
];
const PIN_LINK_PREFIX: &str = "link_";

/// Errors of the data-plane loader, each naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("invalid interface name {0:?}: 1 to 15 bytes, no '/', ':', whitespace or NUL")]
    InvalidInterface(String),
    #[error("interface {0} does not exist")]
    UnknownInterface(String),
    #[error("interface {0} already has our program attached (pin {1})")]
    AlreadyAttached(String, PathBuf),
    #[error("interface {0} has no attachment of ours")]
    NotAttached(String),
    #[error("{0} is not on a bpffs (mount one, or use a directory under /sys/fs/bpf)")]
    NotBpffs(PathBuf),
    #[error(
        "no bpffs is visible at /sys/fs/bpf in this private mount namespace (as under `ip netns exec`): \
         pins under {0} would not outlive this process; use `nsenter --net=/run/netns/NAME` or mount bpffs first"
    )]
    PrivateMountNs(PathBuf),
    #[error("no data plane pinned under {0}")]
    NotPinned(PathBuf),
    #[error("attaching to {iface} ({mode}): {source}")]
    Attach { iface: String, mode: &'static str, source: ProgramError },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error("loading eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program: {0}")]
    Program(#[from] ProgramError),
    #[error("map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("redirect map: {0}")]
    XdpMap(#[from] aya::maps::xdp::XdpMapError),
    #[error("pinning: {0}")]
    Pin(#[from] aya::pin::PinError),
    #[error("link: {0}")]
    Link(#[from] aya::programs::links::LinkError),
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("session: {0}")]
    Session(String),
    #[error(
        "the pinned data plane is another version's ({0}): the daemon rebuilds it from its store at start; \
         without the daemon, remove it with `l2tp-ctl dataplane detach --all` and attach again"
    )]
    Incompatible(String),
}

type Result<T, E = DataplaneError> = std::result::Result<T, E>;

/// How to attach an XDP program to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic mode when the driver
    /// refuses.
    #[default]
    Auto,
    /// Native mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Generic => "generic",
        })
    }
}

/// The mode an attachment ended up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Generic => "generic",
        })
    }
}

/// Which program an interface gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Uplink: L2TP arrives here and is decapsulated.
    Uplink,
    /// Attachment circuit: customer frames arrive here and are encapsulated.
    Attachment,
}

impl Role {
    fn prog(self) -> &'static str {
        match self {
            Self::Uplink => PROG_UPLINK,
            Self::Attachment => PROG_ATTACH,
        }
    }
}

/// Sums of the global per-CPU counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalStats {
    pub values: [u64; GlobalCounter::COUNT as usize],
}

impl GlobalStats {
    pub fn get(&self, c: GlobalCounter) -> u64 {
        self.values[c as usize]
    }

    /// `(name, value)` pairs in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        GlobalCounter::ALL.iter().map(|c| (c.name(), self.get(*c)))
    }
}

/// The global counters: one per-CPU slot holding all of them.
type GlobalSlot = [u64; GlobalCounter::COUNT as usize];

fn read_global_stats<T: std::borrow::Borrow<MapData>>(map: &PerCpuArray<T, GlobalSlot>) -> Result<GlobalStats> {
    let mut stats = GlobalStats::default();
    let per_cpu = map.get(&0, 0)?;
    for c in GlobalCounter::ALL {
        stats.values[c as usize] = per_cpu.iter().map(|slot| slot[c as usize]).fold(0u64, u64::wrapping_add);
    }
    Ok(stats)
}

/// A freshly loaded (not pinned) data plane: used by BPF_PROG_TEST_RUN tests
/// and benchmarks, which drive the programs without any interface.
#[derive(Debug)]
pub struct Loaded {
    ebpf: Ebpf,
}

/// A loader for the data-plane object, with `SESSION_STATS` sized to one
/// slot per session and possible CPU.
fn loader<'a>() -> Result<EbpfLoader<'a>> {
    let mut l = EbpfLoader::new();
    l.map_max_entries(MAP_SESSION_STATS, session::stats_entries()?);
    Ok(l)
}

fn prog_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp> {
    let prog = ebpf.program_mut(name).ok_or(DataplaneError::Missing(name))?;
    Ok(prog.try_into()?)
}

impl Loaded {
    /// Loads `object` (by default [`EBPF_OBJECT`]) and both programs into
    /// the kernel: this is where the verifier runs.
    pub fn load(object: &[u8]) -> Result<Self> {
        let mut ebpf = loader()?.load(object)?;
        for name in [PROG_UPLINK, PROG_ATTACH] {
            prog_mut(&mut ebpf, name)?.load()?;
        }
        let me = Self { ebpf };
        me.switches()?.enable_next_hop_cache()?;
        Ok(me)
    }

    /// The data-plane wide switches of this object.
    pub fn switches(&self) -> Result<Switches> {
        let map = self.ebpf.map(MAP_DP_CONFIG).ok_or(DataplaneError::Missing("DP_CONFIG map"))?;
        Switches::new(dup_map(map)?)
    }

    pub fn program(&mut self, role: Role) -> Result<&mut Xdp> {
        prog_mut(&mut self.ebpf, role.prog())
    }

    /// Any program of the object by name (see `l2tp_common::tools`),
    /// loaded into the kernel on first use.
    pub fn tool(&mut self, name: &str) -> Result<&mut Xdp> {
        let prog: &mut Xdp =
            self.ebpf.program_mut(name).ok_or(DataplaneError::Missing("program of that name"))?.try_into()?;
        if prog.fd().is_err() {
            prog.load()?;
        }
        Ok(prog)
    }

    /// Names of every program in the object.
    pub fn program_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.ebpf.programs().map(|(n, _)| n.to_owned()).collect();
        names.sort();
        names
    }

    /// What the kernel reports of a loaded program: instructions the
    /// verifier processed and the size of the JIT image in bytes.
    pub fn verifier_cost(&mut self, name: &str) -> Result<(u32, u32)> {
        let info = self.tool(name)?.info()?;
        Ok((info.verified_instruction_count().unwrap_or(0), info.size_jitted()))
    }

    /// A map of the object by name.
    pub fn map_mut(&mut self, name: &str) -> Result<&mut Map> {
        self.ebpf.map_mut(name).ok_or(DataplaneError::Missing("map"))
    }

    pub fn global_stats(&self) -> Result<GlobalStats> {
        let map = self.ebpf.map(MAP_GLOBAL_STATS).ok_or(DataplaneError::Missing("GLOBAL_STATS map"))?;
        read_global_stats(&PerCpuArray::<_, GlobalSlot>::try_from(map)?)
    }

    /// The session tables of this object (duplicated map handles).
    pub fn sessions(&self) -> Result<SessionTable> {
        SessionTable::open(|name| {
            let map = self.ebpf.map(name).ok_or(DataplaneError::Missing("session map"))?;
            dup_map(map)
        })
    }
}

/// The data-plane wide switches (`DP_CONFIG`): the next-hop cache's
/// generation.
///
/// Next-hop cache: a session whose next hop comes from `bpf_fib_lookup`
/// keeps the last answer in `SESSION_NEXT_HOP` for
/// [`l2tp_common::session::NEXT_HOP_TTL_JIFFIES`], or until the generation
/// moves. A daemon that follows rtnetlink calls
/// [`Switches::invalidate_next_hops`] on every neighbour, route, address
/// or link change so that the change is seen on the next frame; without
/// it a change is seen within the TTL. The session table moves the
/// generation itself when a session is changed in place, and clears a
/// slot's entry when a session is installed in it.
pub struct Switches {
    map: Array<MapData, DataplaneConfig>,
}

impl fmt::Debug for Switches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Switches").field("now", &self.get().ok()).finish()
    }
}

impl Switches {
    pub(crate) fn new(map: Map) -> Result<Self> {
        Ok(Self { map: Array::try_from(map)? })
    }

    pub fn get(&self) -> Result<DataplaneConfig> {
        Ok(self.map.get(&0, 0)?)
    }

    fn update(&mut self, f: impl FnOnce(&mut DataplaneConfig)) -> Result<()> {
        let mut c = self.get()?;
        f(&mut c);
        self.map.set(0, c, 0)?;
        Ok(())
    }

    /// Turns the next-hop cache on (done by every load).
    pub fn enable_next_hop_cache(&mut self) -> Result<()> {
        self.update(|c| c.next_hop_gen = c.next_hop_gen.max(1))
    }

    /// Turns it off: a `bpf_fib_lookup` on every frame.
    pub fn disable_next_hop_cache(&mut self) -> Result<()> {
        self.update(|c| c.next_hop_gen = 0)
    }

    /// Makes every cached next hop stale at once (nothing when the cache
    /// is off). Cheap: one map write; each session looks its next hop up
    /// again on its next frame.
    pub fn invalidate_next_hops(&mut self) -> Result<()> {
        self.update(|c| {
            if c.next_hop_gen != 0 {
                c.next_hop_gen = c.next_hop_gen.wrapping_add(1).max(1);
            }
        })
    }
}

/// A second handle on a loaded map (same kernel object), opened by ID.
fn dup_map(map: &Map) -> Result<Map> {
    let data = match map {
        Map::Array(d) | Map::PerCpuArray(d) | Map::HashMap(d) | Map::DevMap(d) | Map::DevMapHash(d) => d,
        _ => return Err(DataplaneError::Missing("map of a known type")),
    };
    Ok(Map::from_map_data(MapData::from_id(data.info()?.id())?)?)
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const BPFFS_MOUNTPOINT: &str = "/sys/fs/bpf";

fn fs_magic(path: &Path) -> io::Result<i64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: statfs writes into the zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

/// Makes sure `dir` will live on a bpffs: mounts bpffs on /sys/fs/bpf when
/// nothing is mounted there yet (as systemd does at boot), and refuses a
/// directory on any other file system.
fn ensure_bpffs(dir: &Path) -> Result<()> {
    let mut existing = dir;
    while !existing.exists() {
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    let magic = fs_magic(existing).map_err(|source| DataplaneError::Io {
        what: "statfs",
        path: existing.to_owned(),
        source,
    })?;
    if magic == BPF_FS_MAGIC {
        return Ok(());
    }
    if existing == Path::new(BPFFS_MOUNTPOINT) {
        // `ip netns exec` runs us in a private mount namespace with a fresh
        // /sys: a bpffs mounted there would vanish with this process, and
        // the pins with it.
        // PID 1's namespace link is unreadable in some sandboxes (EACCES):
        // only a positive difference counts.
        let own = fs::read_link("/proc/self/ns/mnt").ok();
        let init = fs::read_link("/proc/1/ns/mnt").ok();
        if own.is_some() && init.is_some() && own != init {
            return Err(DataplaneError::PrivateMountNs(dir.to_owned()));
        }
        let (src, target, fstype) = (c"bpf", c"/sys/fs/bpf", c"bpf");
        // SAFETY: valid NUL-terminated strings; no data argument.
        let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            return Err(DataplaneError::Io {
                what: "mounting bpffs on",
                path: existing.to_owned(),
                source: io::Error::last_os_error(),
            });
        }
        return Ok(());
    }
    Err(DataplaneError::NotBpffs(dir.to_owned()))
}

pub(crate) fn map_pin(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("map_{}", name.to_ascii_lowercase()))
}

fn prog_pin(dir: &Path, role: Role) -> PathBuf {
    dir.join(match role {
        Role::Uplink => "prog_uplink",
        Role::Attachment => "prog_attach",
    })
}

/// The data plane pinned under one bpffs directory.
#[derive(Debug)]
pub struct Pinned {
    dir: PathBuf,
}

impl Pinned {
    /// Opens the pins under `dir`, loading and pinning the object first if
    /// nothing is pinned there yet. Existing pins are reused untouched, so
    /// forwarding state survives a restart of the caller.
    pub fn open_or_create(dir: &Path) -> Result<Self> {
        if prog_pin(dir, Role::Attachment).exists() {
            return Ok(Self { dir: dir.to_owned() });
        }
        ensure_bpffs(dir)?;
        fs::create_dir_all(dir).map_err(|source| DataplaneError::Io {
            what: "creating pin directory",
            path: dir.to_owned(),
            source,
        })?;
        let pins: Vec<(&str, PathBuf)> = MAPS.iter().map(|m| (*m, map_pin(dir, m))).collect();
        let result = (|| {
            let mut loader = loader()?;
            for (name, path) in &pins {
                loader.map_pin_path(name, path.clone());
            }
            let mut ebpf = loader.load(EBPF_OBJECT)?;
            for role in [Role::Uplink, Role::Attachment] {
                let prog = prog_mut(&mut ebpf, role.prog())?;
                prog.load()?;
                prog.pin(prog_pin(dir, role))?;
            }
            Switches::new(Map::from_map_data(MapData::from_pin(map_pin(dir, MAP_DP_CONFIG))?)?)?
                .enable_next_hop_cache()?;
            Ok(())
        })();
        if result.is_err() {
            // Nothing half-made stays behind.
            for (_, path) in &pins {
                let _ = fs::remove_file(path);
            }
            for role in [Role::Uplink, Role::Attachment] {
                let _ = fs::remove_file(prog_pin(dir, role));
            }
        }
        result.map(|()| Self { dir: dir.to_owned() })
    }

    /// Opens existing pins; fails if nothing is pinned under `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        if !prog_pin(dir, Role::Attachment).exists() {
            return Err(DataplaneError::NotPinned(dir.to_owned()));
        }
        Ok(Self { dir: dir.to_owned() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn link_pin(&self, iface: &str) -> PathBuf {
        self.dir.join(format!("{PIN_LINK_PREFIX}{iface}"))
    }

    /// Attaches the program for `role` to `iface` (in the caller's network
    /// namespace) and pins the link, so the attachment outlives this process.
    pub fn attach(&self, iface: &str, role: Role, mode: AttachMode) -> Result<AttachedMode> {
        let ifindex = ifindex(iface)?;
        let pin = self.link_pin(iface);
        if pin.exists() {
            return Err(DataplaneError::AlreadyAttached(iface.to_owned(), pin));
        }
        let mut prog = Xdp::from_pin(prog_pin(&self.dir, role), aya_obj::programs::XdpAttachType::Interface)?;
        let attempts: &[(XdpMode, AttachedMode)] = match mode {
            AttachMode::Auto => &[(XdpMode::Driver, AttachedMode::Native), (XdpMode::Skb, AttachedMode::Generic)],
            AttachMode::Native => &[(XdpMode::Driver, AttachedMode::Native)],
            AttachMode::Generic => &[(XdpMode::Skb, AttachedMode::Generic)],
        };
        let mut last_err = None;
        for &(xdp_mode, attached) in attempts {
            match prog.attach_to_if_index(ifindex, xdp_mode) {
                Ok(id) => {
                    let link = prog.take_link(id)?;
                    let fd_link: FdLink = link.try_into()?;
                    fd_link.pin(&pin)?;
                    return Ok(attached);
                }
                Err(e) => last_err = Some((attached, e)),
            }
        }
        let (attached, source) = last_err.ok_or(DataplaneError::Missing("attach mode"))?;
        Err(DataplaneError::Attach {
            iface: iface.to_owned(),
            mode: match attached {
                AttachedMode::Native => "native",
                AttachedMode::Generic => "generic",
            },
            source,
        })
    }

    /// Detaches from `iface` by removing its pinned link.
    pub fn detach(&self, iface: &str) -> Result<()> {
        validate_ifname(iface)?;
        let pin = self.link_pin(iface);
        if !pin.exists() {
            return Err(DataplaneError::NotAttached(iface.to_owned()));
        }
        let link = PinnedLink::from_pin(&pin)?;
        let _detached_on_drop: FdLink =
            link.unpin().map_err(|source| DataplaneError::Io { what: "unpinning", path: pin, source })?;
        Ok(())
    }

    /// Interfaces with a pinned attachment.
    pub fn attached(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|source| DataplaneError::Io {
            what: "reading",
            path: self.dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str().and_then(|n| n.strip_prefix(PIN_LINK_PREFIX)) {
                out.push(name.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn map(&self, name: &str) -> Result<Map> {
        Ok(Map::from_map_data(MapData::from_pin(map_pin(&self.dir, name))?)?)
    }

    pub fn global_stats(&self) -> Result<GlobalStats> {
        read_global_stats(&PerCpuArray::<_, GlobalSlot>::try_from(self.map(MAP_GLOBAL_STATS)?)?)
    }

    /// The pinned program of `role` (for BPF_PROG_TEST_RUN fixtures).
    pub fn program(&self, role: Role) -> Result<Xdp> {
        Ok(Xdp::from_pin(prog_pin(&self.dir, role), aya_obj::programs::XdpAttachType::Interface)?)
    }

    /// The session tables, through the pinned maps.
    pub fn sessions(&self) -> Result<SessionTable> {
        SessionTable::open(|name| self.map(name))
    }

    /// The data-plane wide switches (pins made by an older object have
    /// none: [`DataplaneError::Missing`]).
    pub fn switches(&self) -> Result<Switches> {
        if !map_pin(&self.dir, MAP_DP_CONFIG).exists() {
            return Err(DataplaneError::Missing("DP_CONFIG pin (data plane pinned by an older l2tp-ctl)"));
        }
        Switches::new(self.map(MAP_DP_CONFIG)?)
    }

    /// Detaches everything and removes every pin and the directory: the
    /// data plane stops.
    pub fn destroy(self) -> Result<()> {
        for iface in self.attached()? {
            self.detach(&iface)?;
        }
        let mut paths: Vec<PathBuf> = MAPS.iter().map(|m| map_pin(&self.dir, m)).collect();
        paths.extend([Role::Uplink, Role::Attachment].map(|r| prog_pin(&self.dir, r)));
        for path in paths {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(DataplaneError::Io { what: "removing pin", path, source }),
            }
        }
        fs::remove_dir(&self.dir).map_err(|source| DataplaneError::Io {
            what: "removing pin directory",
            path: self.dir.clone(),
            source,
        })
    }
}
