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

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);
}
