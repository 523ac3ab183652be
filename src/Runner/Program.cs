using System.Runtime.InteropServices;
using LoraPS.Runner.Hosting;

namespace LoraPS.Runner;

/// <summary>
/// loraps: runs PowerShell scripts and commands with LoraPS imported, on machines without pwsh.
/// <code>
/// loraps script.ps1 [arguments]        like pwsh -File
/// loraps -Command 'text' [more text]   like pwsh -Command ('-' reads the text from stdin)
/// </code>
/// </summary>
public static class Program
{
    const string Usage = """
        Usage: loraps <script.ps1> [arguments...]
               loraps -Command <text...>        (-c; '-' reads the command from standard input)
               loraps -Help

        Runs PowerShell with the LoraPS module imported. Output goes to stdout, formatted as pwsh would;
        errors, warnings, verbose messages and progress go to stderr. The exit code is 0 when nothing failed,
        1 after any error, N after 'exit N', 130 after Ctrl+C. Environment: LORAPS_MODULE overrides the module
        (a folder or a .psd1); NO_COLOR turns colours off.
        """;

    public static int Main(string[] args)
    {
        var terminal = Terminal.FromConsole();
        if (args.Length == 0 || args[0] is "-Help" or "-help" or "--help" or "-h" or "-?" or "/?")
        {
            (args.Length == 0 ? terminal.Error : terminal.Out).WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }

        string? modulePath = FindModule();
        if (modulePath is null)
        {
            terminal.Error.WriteLine("loraps: cannot find the LoraPS module (out/LoraPS/LoraPS.psd1). Build it with " +
                                     "'dotnet build src/Runner -c Release' or set LORAPS_MODULE.");
            return 1;
        }

        // So that 'Import-Module LoraPS' and '#Requires -Modules LoraPS' find the same module by name.
        string modulesRoot = Path.GetDirectoryName(Path.GetDirectoryName(modulePath)!)!;
        Environment.SetEnvironmentVariable("PSModulePath",
            modulesRoot + Path.PathSeparator + Environment.GetEnvironmentVariable("PSModulePath"));

        var host = new RunnerHost(terminal);
        LoraSession session;
        try
        {
            session = LoraSession.Open(host, modulePath);
        }
        catch (InvalidOperationException e)
        {
            terminal.Error.WriteLine("loraps: " + e.Message);
            return 1;
        }

        using (session)
        using (StopOn(PosixSignal.SIGINT, session))
        using (StopOn(PosixSignal.SIGTERM, session))
        {
            if (IsCommandSwitch(args[0]))
            {
                string text = string.Join(" ", args.Skip(1));
                if (text == "-") text = Console.In.ReadToEnd();
                if (text.Length == 0)
                {
                    terminal.Error.WriteLine("loraps: -Command needs the command text.");
                    return 2;
                }
                return session.RunCommand(text);
            }
            int first = args[0] is "-File" or "-file" or "-f" ? 1 : 0;
            if (first >= args.Length)
            {
                terminal.Error.WriteLine("loraps: -File needs the path of a script.");
                return 2;
            }
            return session.RunScriptFile(args[first], args.Skip(first + 1).ToList());
        }
    }

    static bool IsCommandSwitch(string arg) =>
        arg.Equals("-Command", StringComparison.OrdinalIgnoreCase) || arg.Equals("-c", StringComparison.OrdinalIgnoreCase) ||
        arg.Equals("--command", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The first Ctrl+C (or SIGTERM) stops the running pipeline through StopProcessing, as in pwsh; a second one,
    /// while the first is still being honoured, ends the process the default way.
    /// </summary>
    static PosixSignalRegistration StopOn(PosixSignal signal, LoraSession session)
    {
        bool stopping = false;
        return PosixSignalRegistration.Create(signal, context =>
        {
            if (stopping) return; // default handling: terminate
            stopping = true;
            context.Cancel = session.Stop();
        });
    }

    /// <summary>$LORAPS_MODULE, else out/LoraPS beside the repository that contains this runner.</summary>
    static string? FindModule()
    {
        if (Environment.GetEnvironmentVariable("LORAPS_MODULE") is { Length: > 0 } configured)
        {
            string full = Path.GetFullPath(configured);
            return Directory.Exists(full) ? Path.Combine(full, "LoraPS.psd1") : full;
        }
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "out", "LoraPS", "LoraPS.psd1");
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }
}
