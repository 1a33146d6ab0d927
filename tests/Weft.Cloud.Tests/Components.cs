using Weft.Lab.Services;

namespace Weft.Cloud.Tests;

/// <summary>Starts etcd, mosquitto and haproxy; a component that is missing or does not start makes the test report skipped with the reason.</summary>
public static class Components
{
    public static async Task<T> StartAsync<T>(Func<Task<T>> start)
    {
        try
        {
            return await start();
        }
        catch (ServiceUnavailableException ex)
        {
            throw new SkipException("skipped: " + ex.Message);
        }
    }

    public static Task<EtcdService> Etcd() => StartAsync(() => EtcdService.StartNewAsync());

    public static Task<MosquittoService> Mosquitto() => StartAsync(() => MosquittoService.StartNewAsync());

    public static Task<HaproxyService> Haproxy(params HaproxyFrontend[] frontends) => StartAsync(() => HaproxyService.StartNewAsync(frontends));
}
