namespace LoraPS.Checkpoints;

/// <summary>
/// A checkpoint file (a .safetensors file or a shard index) is malformed. The message names the file, the exact
/// problem, and what to do; <see cref="FilePath"/> and <see cref="Problem"/> carry the parts separately.
/// </summary>
/// <remarks>
/// <see cref="InvalidDataException"/> would be the natural base, but it is sealed. <see cref="IOException"/> is the base
/// of <see cref="FileNotFoundException"/> too, so one <c>catch (IOException)</c> handles a missing and a malformed checkpoint.
/// </remarks>
public sealed class CheckpointFormatException : IOException
{
    public CheckpointFormatException(string filePath, string problem, string advice, Exception? innerException = null)
        : base($"Invalid checkpoint file '{filePath}': {problem}. {advice}", innerException)
    {
        FilePath = filePath;
        Problem = problem;
    }

    /// <summary>Full path of the offending file.</summary>
    public string FilePath { get; }

    /// <summary>The problem alone, without the file name and advice.</summary>
    public string Problem { get; }
}
