// Repairs TorchSharp's native wrapper for systems whose libstdc++ is older than the one it was linked against.
//
// libLibTorchSharp.so (TorchSharp 0.107) is built with GCC 13 and so asks libstdc++.so.6 for the version
// GLIBCXX_3.4.32. Debian 12 and Ubuntu 22.04 ship 3.4.30, and the dynamic loader refuses the library. The only
// symbol tied to that version is std::ios_base_library_init(), which GCC 13 emits as a bare `.globl` reference
// (it only forces the iostream initialiser to be linked) and which no relocation uses. So the library runs fine
// once the loader stops insisting on the version: we set VER_FLG_WEAK on each missing version requirement in
// .gnu.version_r, and point each undefined symbol bound to such a version at VER_NDX_GLOBAL so nothing refers
// to a version the system lacks. We refuse when a missing version is used by a relocation, because then a
// symbol would really be unresolved at run time.
//
// The same file is compiled into an MSBuild inline task (Directory.Build.targets) and into the tests.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;

namespace LoraPS.Build
{
    /// <summary>What <see cref="LibStdCxxCompat.Repair"/> did to one file.</summary>
    public enum CompatOutcome { NotNeeded, AlreadyRepaired, Repaired }

    public sealed class CompatReport
    {
        public CompatOutcome Outcome { get; set; }
        public List<string> WeakenedVersions { get; } = new List<string>();
        public List<string> RepointedSymbols { get; } = new List<string>();
        public string Message { get; set; } = "";
    }

    public static class LibStdCxxCompat
    {
        const uint ShtRela = 4, ShtDynsym = 11, ShtGnuVerdef = 0x6ffffffd, ShtGnuVerneed = 0x6ffffffe, ShtGnuVersym = 0x6fffffff;
        const ushort VerFlgWeak = 0x2, VerNdxGlobal = 1;
        public const string LibStdCxx = "libstdc++.so.6";

        /// <summary>Finds the libstdc++.so.6 the dynamic loader would use, or null when there is none (not Linux).</summary>
        public static string? FindSystemLibStdCxx()
        {
            string[] candidates =
            {
                "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
                "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/lib64/libstdc++.so.6",
                "/usr/lib/libstdc++.so.6",
            };
            return candidates.FirstOrDefault(File.Exists);
        }

        /// <summary>The version names a shared library defines (.gnu.version_d), e.g. GLIBCXX_3.4.30.</summary>
        public static HashSet<string> DefinedVersions(string path)
        {
            var elf = new Elf(File.ReadAllBytes(path));
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var sec in elf.Sections.Where(s => s.Type == ShtGnuVerdef))
            {
                var strtab = elf.Sections[(int)sec.Link];
                long off = sec.Offset;
                for (int i = 0; i < sec.Info; i++)
                {
                    ushort cnt = elf.U16(off + 6);
                    uint aux = elf.U32(off + 12), next = elf.U32(off + 16);
                    if (cnt > 0) names.Add(elf.Str(strtab, elf.U32(off + aux)));
                    if (next == 0) break;
                    off += next;
                }
            }
            return names;
        }

        /// <summary>
        /// Repairs <paramref name="libraryPath"/> in place (temp file + rename, modification time kept) so that it
        /// loads against a libstdc++ defining only <paramref name="available"/>. Idempotent.
        /// </summary>
        public static CompatReport Repair(string libraryPath, ISet<string> available)
        {
            var bytes = File.ReadAllBytes(libraryPath);
            var elf = new Elf(bytes);
            var report = new CompatReport();
            var needSec = elf.Sections.FirstOrDefault(s => s.Type == ShtGnuVerneed);
            if (needSec == null) { report.Outcome = CompatOutcome.NotNeeded; report.Message = "no version requirements"; return report; }
            var strtab = elf.Sections[(int)needSec.Link];

            // Walk Verneed → Vernaux, collecting the libstdc++ versions the system lacks (by version index).
            var missing = new Dictionary<ushort, (long auxOffset, string name, bool weak)>();
            long off = needSec.Offset;
            for (int i = 0; i < needSec.Info; i++)
            {
                ushort cnt = elf.U16(off + 2);
                string file = elf.Str(strtab, elf.U32(off + 4));
                uint aux = elf.U32(off + 8), next = elf.U32(off + 12);
                long a = off + aux;
                for (int j = 0; j < cnt; j++)
                {
                    ushort flags = elf.U16(a + 4), other = elf.U16(a + 6);
                    string name = elf.Str(strtab, elf.U32(a + 8));
                    if (file == LibStdCxx && !available.Contains(name))
                        missing[other] = (a, name, (flags & VerFlgWeak) != 0);
                    uint an = elf.U32(a + 12);
                    if (an == 0) break;
                    a += an;
                }
                if (next == 0) break;
                off += next;
            }
            if (missing.Count == 0) { report.Outcome = CompatOutcome.NotNeeded; report.Message = "system libstdc++ has every version it needs"; return report; }

            var dynsym = elf.Sections.First(s => s.Type == ShtDynsym);
            var versym = elf.Sections.First(s => s.Type == ShtGnuVersym);
            var dynstr = elf.Sections[(int)dynsym.Link];
            int symCount = (int)(dynsym.Size / 24);

            // Symbols referenced by relocations must stay resolvable: refuse if any is bound to a missing version.
            var relocated = new HashSet<int>();
            foreach (var rela in elf.Sections.Where(s => s.Type == ShtRela && s.Link == elf.Sections.IndexOf(dynsym)))
                for (long r = rela.Offset; r + 24 <= rela.Offset + rela.Size; r += 24)
                    relocated.Add((int)(elf.U64(r + 8) >> 32));

            bool changed = false;
            for (int s = 1; s < symCount; s++)
            {
                long vOff = versym.Offset + 2L * s;
                ushort ver = (ushort)(elf.U16(vOff) & 0x7fff);
                if (!missing.TryGetValue(ver, out var m)) continue;
                string sym = elf.Str(dynstr, elf.U32(dynsym.Offset + 24L * s));
                if (relocated.Contains(s))
                    throw new InvalidOperationException(
                        $"{Path.GetFileName(libraryPath)} uses {sym}@{m.name}, which the system libstdc++ lacks; " +
                        "it cannot be repaired. Install a newer libstdc++ (GCC 13 or later).");
                elf.W16(vOff, VerNdxGlobal);
                report.RepointedSymbols.Add($"{sym}@{m.name}");
                changed = true;
            }
            foreach (var m in missing.Values)
            {
                if (m.weak) continue;
                elf.W16(m.auxOffset + 4, (ushort)(elf.U16(m.auxOffset + 4) | VerFlgWeak));
                report.WeakenedVersions.Add(m.name);
                changed = true;
            }
            if (!changed)
            {
                report.Outcome = CompatOutcome.AlreadyRepaired;
                report.Message = $"already repaired (weak: {string.Join(", ", missing.Values.Select(v => v.name))})";
                return report;
            }

            var mtime = File.GetLastWriteTimeUtc(libraryPath);
            string tmp = libraryPath + ".compat.tmp";
            File.WriteAllBytes(tmp, bytes);
            File.SetLastWriteTimeUtc(tmp, mtime); // keeps MSBuild's unchanged-file copy check quiet on rebuilds
            File.Replace(tmp, libraryPath, null); // a rename: never writes through a hard link into the package cache
            report.Outcome = CompatOutcome.Repaired;
            report.Message = $"marked {string.Join(", ", report.WeakenedVersions)} weak and unbound " +
                             $"{string.Join(", ", report.RepointedSymbols)} (system libstdc++ lacks them)";
            return report;
        }

        /// <summary>Minimal little-endian ELF64 reader: section headers and integer access.</summary>
        sealed class Elf
        {
            public sealed class Section { public uint Type, Link, Info; public long Offset, Size; }
            readonly byte[] b;
            public List<Section> Sections { get; } = new List<Section>();

            public Elf(byte[] bytes)
            {
                b = bytes;
                if (b.Length < 64 || b[0] != 0x7f || b[1] != (byte)'E' || b[2] != (byte)'L' || b[3] != (byte)'F')
                    throw new InvalidDataException("not an ELF file");
                if (b[4] != 2 || b[5] != 1) throw new InvalidDataException("only 64-bit little-endian ELF is supported");
                long shoff = (long)U64(0x28);
                ushort shentsize = U16(0x3A), shnum = U16(0x3C);
                if (shoff <= 0 || shoff + (long)shentsize * shnum > b.Length) throw new InvalidDataException("ELF section table out of range");
                for (int i = 0; i < shnum; i++)
                {
                    long h = shoff + (long)i * shentsize;
                    var s = new Section { Type = U32(h + 4), Offset = (long)U64(h + 0x18), Size = (long)U64(h + 0x20), Link = U32(h + 0x28), Info = U32(h + 0x2C) };
                    if (s.Type != 8 /* NOBITS */ && s.Offset + s.Size > b.Length) throw new InvalidDataException("ELF section out of range");
                    Sections.Add(s);
                }
            }
            public ushort U16(long o) => BitConverter.ToUInt16(b, checked((int)o));
            public uint U32(long o) => BitConverter.ToUInt32(b, checked((int)o));
            public ulong U64(long o) => BitConverter.ToUInt64(b, checked((int)o));
            public void W16(long o, ushort v) { b[o] = (byte)v; b[o + 1] = (byte)(v >> 8); }
            public string Str(Section strtab, uint index)
            {
                long start = strtab.Offset + index, end = start;
                while (end < strtab.Offset + strtab.Size && b[end] != 0) end++;
                return Encoding.ASCII.GetString(b, (int)start, (int)(end - start));
            }
        }
    }
}

#if !LORAPS_NO_MSBUILD
namespace LoraPS.Build
{
    /// <summary>MSBuild task: repairs every libLibTorchSharp.so under a folder when the system libstdc++ needs it.</summary>
    public sealed class RepairLibTorchSharp : Microsoft.Build.Utilities.Task
    {
        [Microsoft.Build.Framework.Required] public string Directory { get; set; } = "";

        public override bool Execute()
        {
            if (!System.Runtime.InteropServices.RuntimeInformation.IsOSPlatform(System.Runtime.InteropServices.OSPlatform.Linux) || !System.IO.Directory.Exists(Directory)) return true;
            var libs = System.IO.Directory.GetFiles(Directory, "libLibTorchSharp.so", SearchOption.AllDirectories);
            if (libs.Length == 0) return true;
            var system = LibStdCxxCompat.FindSystemLibStdCxx();
            if (system == null) { Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High, "LoraPS: no system libstdc++.so.6 found; TorchSharp natives left as shipped."); return true; }
            var available = LibStdCxxCompat.DefinedVersions(system);
            foreach (var lib in libs)
            {
                try
                {
                    var report = LibStdCxxCompat.Repair(lib, available);
                    if (report.Outcome == CompatOutcome.Repaired)
                        Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High, $"LoraPS: repaired {lib}: {report.Message}");
                    else
                        Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal, $"LoraPS: {lib}: {report.Message}");
                }
                catch (Exception e) { Log.LogError($"LoraPS: cannot repair {lib}: {e.Message}"); }
            }
            return !Log.HasLoggedErrors;
        }
    }
}
#endif
