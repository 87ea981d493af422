// Package watch is FSO's recursive Linux inotify watcher. It reads inotify
// directly through golang.org/x/sys/unix and turns the kernel's records into
// batches of [Event], one batch per read(2).
//
// # Why not fsnotify
//
// fsnotify is not recursive, and it keeps the inotify rename cookie private
// (its Event has an unexported renamedFrom; fsnotify#170, #628), so a caller
// cannot pair IN_MOVED_FROM with IN_MOVED_TO into one [Rename] carrying the
// old path. Reading inotify directly also exposes IN_Q_OVERFLOW, IN_ISDIR,
// IN_MOVE_SELF and IN_IGNORED, which the watcher needs to keep its map of
// watch descriptors right and to tell the caller when it must rescan.
//
// # Arm, then list
//
// inotify only reports changes in directories that already carry a watch, so
// files created in a new directory before its watch exists would be lost. On
// every new directory (IN_CREATE or IN_MOVED_TO with IN_ISDIR) the watcher
// reports its [Create], arms the watch first and only then lists the
// directory: every entry found is reported as a [Create] with Scan set, and
// subdirectories are armed and listed in turn, depth first. An entry created
// between the arming and the listing is seen twice, by the kernel and by the
// listing; the watcher remembers, for about two seconds, the names each
// listing reported and drops the kernel's IN_CREATE for such a name once.
//
// # Renames
//
// IN_MOVED_FROM and IN_MOVED_TO with the same cookie become one [Rename]. A
// IN_MOVED_FROM that ends a read waits up to [Options].MovePairTimeout for the
// next read; if its pair does not come, it is a [Remove] with Moved set (moved
// out of the watched trees). An IN_MOVED_TO without pair is a [Create] with
// Moved set. A renamed directory keeps its watches, and the watcher updates
// the paths of it and of every directory below it.
//
// # Loss
//
// The watcher never hides loss: when the kernel queue overflows it reports an
// [Overflow] event (the caller should rescan) and re-walks its roots to arm
// directories it may have missed; directories it cannot arm are sent on
// [Watcher.Errors] and listed in [Status].Unwatched; a root that is deleted or
// moved away is reported as [RootGone].
package watch
