using System.Runtime.InteropServices;

namespace LoraPS.Checkpoints;

/// <summary>Pages of a read-only file mapping that a read has finished with.</summary>
internal static unsafe partial class MappedPages
{
    const int MadvDontNeed = 4;
    static readonly long PageSize = Environment.SystemPageSize;

    /// <summary>
    /// Drops the pages under [<paramref name="start"/>, start + <paramref name="length"/>) from this process's resident set
    /// (Linux <c>madvise(MADV_DONTNEED)</c>; a no-op elsewhere). The file stays in the page cache and a later access
    /// faults the same bytes back in, so this is only about accounting: without it every tensor copied out of a mapped
    /// checkpoint stays resident until the file is closed, and loading peaks at the copies plus the whole file.
    /// </summary>
    public static void Release(byte* start, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0) return;
        long first = (long)start / PageSize * PageSize;
        long end = ((long)start + length + PageSize - 1) / PageSize * PageSize;
        try
        {
            Madvise((nint)first, (nuint)(end - first), MadvDontNeed);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // Without madvise the pages simply stay resident until the mapping closes.
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);
}
