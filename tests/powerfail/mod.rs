//! A FUSE test filesystem that loses, on a "power cut", everything not made durable.
//!
//! The whole tree lives in memory (in the test process). Every node keeps two states: what
//! programs see now, and what a disk would still hold after losing power. The durability
//! model is POSIX's, read strictly:
//!
//! - `fsync`/`fdatasync` of a file makes its current contents and size durable (datasync is
//!   treated like fsync: the size is what redb needs from it);
//! - `fsync` of a directory makes that directory's current entries durable: a create, an
//!   unlink, a `mkdir` or a rename (on both sides) survives only once the directory holding
//!   the entry was fsynced; fsyncing a file does not make its name durable;
//! - nothing else ever is (no journal, no write-back at intervals: the worst case).
//!
//! `PowerFailFs::power_cut` builds the tree a restarted machine would see: from the root,
//! the durable entries of each directory, and for each file its durable contents. A file
//! whose entry became durable before its data shows its last synced contents (empty if
//! never synced). Hard links, symlinks and special files are refused (kura uses none).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    WriteFlags,
};

#[derive(Clone, Debug)]
enum Kind {
    File {
        data: Vec<u8>,
        synced: Vec<u8>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        synced: BTreeMap<OsString, u64>,
    },
}

#[derive(Clone, Debug)]
struct Node {
    kind: Kind,
    perm: u16,
    mtime: SystemTime,
}

/// The tree, current and durable.
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: HashMap<u64, Node>,
    next: u64,
}

impl Default for Tree {
    fn default() -> Self {
        let root = Node {
            kind: Kind::Dir {
                entries: BTreeMap::new(),
                synced: BTreeMap::new(),
            },
            perm: 0o755,
            mtime: SystemTime::now(),
        };
        Tree {
            nodes: HashMap::from([(1, root)]),
            next: 2,
        }
    }
}

impl Tree {
    /// What survives a power cut: the durable entries reachable from the root, each file with
    /// its durable contents.
    pub fn power_cut(&self) -> Tree {
        let mut out = Tree {
            nodes: HashMap::new(),
            next: self.next,
        };
        let mut todo = vec![1u64];
        while let Some(ino) = todo.pop() {
            let Some(n) = self.nodes.get(&ino) else {
                continue;
            };
            let kind = match &n.kind {
                Kind::File { synced, .. } => Kind::File {
                    data: synced.clone(),
                    synced: synced.clone(),
                },
                Kind::Dir { synced, .. } => {
                    todo.extend(synced.values().copied());
                    Kind::Dir {
                        entries: synced.clone(),
                        synced: synced.clone(),
                    }
                }
            };
            out.nodes.insert(
                ino,
                Node {
                    kind,
                    perm: n.perm,
                    mtime: n.mtime,
                },
            );
        }
        out
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let n = self.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        let (kind, size, nlink) = match &n.kind {
            Kind::File { data, .. } => (FileType::RegularFile, data.len() as u64, 1),
            Kind::Dir { .. } => (FileType::Directory, 0, 2),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: n.mtime,
            mtime: n.mtime,
            ctime: n.mtime,
            crtime: n.mtime,
            kind,
            perm: n.perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entries(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match &mut self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?.kind {
            Kind::Dir { entries, .. } => Ok(entries),
            Kind::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn data(&mut self, ino: u64) -> Result<&mut Vec<u8>, Errno> {
        let n = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        n.mtime = SystemTime::now();
        match &mut n.kind {
            Kind::File { data, .. } => Ok(data),
            Kind::Dir { .. } => Err(Errno::EISDIR),
        }
    }

    fn lookup(&mut self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.entries(parent)?
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    fn add(&mut self, parent: u64, name: &OsStr, kind: Kind, perm: u16) -> Result<u64, Errno> {
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(
            ino,
            Node {
                kind,
                perm,
                mtime: SystemTime::now(),
            },
        );
        self.entries(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    fn is_empty_dir(&self, ino: u64) -> bool {
        matches!(&self.nodes[&ino].kind, Kind::Dir { entries, .. } if entries.is_empty())
    }

    fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.nodes[&ino].kind, dir) {
            (Kind::Dir { .. }, false) => return Err(Errno::EISDIR),
            (Kind::File { .. }, true) => return Err(Errno::ENOTDIR),
            (Kind::Dir { .. }, true) if !self.is_empty_dir(ino) => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        // The node stays for open handles; a power cut keeps only what is reachable.
        self.entries(parent)?.remove(name);
        Ok(())
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            return Err(Errno::EINVAL);
        }
        let ino = self.lookup(parent, name)?;
        if let Ok(old) = self.lookup(newparent, newname) {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if old == ino {
                return Ok(());
            }
            let (src_dir, dst_dir) = (
                matches!(self.nodes[&ino].kind, Kind::Dir { .. }),
                matches!(self.nodes[&old].kind, Kind::Dir { .. }),
            );
            match (src_dir, dst_dir) {
                (false, true) => return Err(Errno::EISDIR),
                (true, false) => return Err(Errno::ENOTDIR),
                (true, true) if !self.is_empty_dir(old) => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        self.entries(parent)?.remove(name);
        self.entries(newparent)?.insert(newname.to_owned(), ino);
        Ok(())
    }

    fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        match &mut self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?.kind {
            Kind::File { data, synced } => *synced = data.clone(),
            Kind::Dir { entries, synced } => *synced = entries.clone(),
        }
        Ok(())
    }
}

/// The FUSE side: every operation on the shared tree.
pub struct PowerFailFs {
    tree: Arc<Mutex<Tree>>,
}

const TTL: Duration = Duration::ZERO;

impl PowerFailFs {
    fn tree(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn entry(reply: ReplyEntry, t: &Tree, ino: Result<u64, Errno>) {
    match ino.and_then(|i| t.attr(i)) {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for PowerFailFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut t = self.tree();
        let ino = t.lookup(parent.0, name);
        entry(reply, &t, ino);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree().attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut t = self.tree();
        let r = (|| {
            if let Some(size) = size {
                t.data(ino.0)?.resize(size as usize, 0);
            }
            if let Some(mode) = mode {
                t.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?.perm = (mode & 0o7777) as u16;
            }
            t.attr(ino.0)
        })();
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut t = self.tree();
        let dir = Kind::Dir {
            entries: BTreeMap::new(),
            synced: BTreeMap::new(),
        };
        let ino = t.add(parent.0, name, dir, (mode & !umask & 0o7777) as u16);
        entry(reply, &t, ino);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.tree().remove(parent.0, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.tree().remove(parent.0, name, true));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self
            .tree()
            .rename(parent.0, name, newparent.0, newname, flags);
        empty(reply, r);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(ino.0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut t = self.tree();
        match t.data(ino.0) {
            Ok(d) => {
                let start = (offset as usize).min(d.len());
                let end = (start + size as usize).min(d.len());
                reply.data(&d[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut t = self.tree();
        match t.data(ino.0) {
            Ok(d) => {
                let end = offset as usize + data.len();
                if d.len() < end {
                    d.resize(end, 0);
                }
                d[offset as usize..end].copy_from_slice(data);
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.tree().sync(ino.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(ino.0), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut t = self.tree();
        let list: Vec<(u64, FileType, OsString)> = match t.entries(ino.0) {
            Ok(e) => e
                .iter()
                .map(|(n, i)| (*i, FileType::RegularFile, n.clone()))
                .collect(),
            Err(e) => return reply.error(e),
        };
        let mut all = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (ino.0, FileType::Directory, OsString::from("..")),
        ];
        for (i, _, n) in list {
            let kind = match t.nodes[&i].kind {
                Kind::Dir { .. } => FileType::Directory,
                Kind::File { .. } => FileType::RegularFile,
            };
            all.push((i, kind, n));
        }
        for (k, (i, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(i), (k + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.tree().sync(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 20, 1 << 19, 1 << 19, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut t = self.tree();
        let file = Kind::File {
            data: Vec::new(),
            synced: Vec::new(),
        };
        match t
            .add(parent.0, name, file, (mode & !umask & 0o7777) as u16)
            .and_then(|i| t.attr(i))
        {
            Ok(a) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(a.ino.0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}

/// A mounted `PowerFailFs`; `power_cut` unmounts it and returns what a disk would hold.
pub struct Mounted {
    tree: Arc<Mutex<Tree>>,
    session: Option<fuser::BackgroundSession>,
    at: std::path::PathBuf,
}

impl Mounted {
    /// Mounts `tree` at `at` (an existing empty directory).
    pub fn mount(tree: Tree, at: &Path) -> std::io::Result<Mounted> {
        let tree = Arc::new(Mutex::new(tree));
        let mut cfg = Config::default();
        cfg.mount_options = vec![MountOption::FSName("kura-powerfail".into())];
        let session = fuser::spawn_mount(PowerFailFs { tree: tree.clone() }, at, &cfg)?;
        Ok(Mounted {
            tree,
            session: Some(session),
            at: at.to_path_buf(),
        })
    }

    /// Cuts the power: everything not made durable is dropped and the filesystem unmounted.
    /// Every process writing to it must be dead (killed) already.
    pub fn power_cut(mut self) -> Tree {
        let durable = self
            .tree
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .power_cut();
        self.unmount();
        durable
    }

    /// Unmounts; if a process still holds files open there (a test that failed before killing
    /// it), detaches the mount lazily so none is left behind.
    fn unmount(&mut self) {
        if let Some(s) = self.session.take()
            && s.umount_and_join().is_err()
        {
            use std::os::unix::ffi::OsStrExt;
            let path = std::ffi::CString::new(self.at.as_os_str().as_bytes()).expect("path");
            // SAFETY: a valid NUL-terminated path; umount2 only reads it.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.unmount();
    }
}
