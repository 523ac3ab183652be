using System.Runtime.InteropServices;

namespace LoraPS.Runtime;

/// <summary>The C heap that libtorch's CPU allocator draws from.</summary>
internal static partial class NativeHeap
{
    /// <summary>
    /// Gives free C-heap memory back to the operating system (glibc's <c>malloc_trim(0)</c>; a no-op elsewhere).
    /// Loading streams every weight through temporaries of a few MB; glibc keeps such freed chunks in its heap, so
    /// without a trim the process would stay as large as the staging traffic made it — hundreds of MB on a model whose
    /// weights are quantized to a fraction of that.
    /// </summary>
    public static void Trim()
    {
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            MallocTrim(0);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // musl and other C libraries have no malloc_trim; their heaps behave differently anyway.
        }
    }

    /// <summary>
    /// Bytes the C heap has handed out and not had back (glibc's <c>mallinfo2</c>: in-use chunks of every arena plus
    /// mmapped blocks) — the memory held by live libtorch CPU tensors, whether or not their pages are resident. Null
    /// where the C library has no mallinfo2 (not Linux, musl, glibc before 2.33).
    /// </summary>
    public static long? AllocatedBytes()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            var info = MallInfo2();
            return (long)(info.Uordblks + info.Hblkhd);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    /// <summary>glibc's <c>struct mallinfo2</c>: ten size_t fields.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2Result
    {
        public nuint Arena, Ordblks, Smblks, Hblks, Hblkhd, Usmblks, Fsmblks, Uordblks, Fordblks, Keepcost;
    }

    [LibraryImport("libc", EntryPoint = "mallinfo2")]
    private static partial MallInfo2Result MallInfo2();

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);
}
